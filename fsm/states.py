"""Stages of a relationship and the triggers that move between them, as logged."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    ICEBREAKER = "icebreaker"
    WARMING = "warming"
    CLOSE = "close"
    REPAIR = "repair"


class Trigger(StrEnum):
    START = "start"
    COUNT = "count"
    NEGATIVE = "negative"
    CRISIS = "crisis"
    RECOVERED = "recovered"
    RESET = "reset"
    COOLDOWN = "cooldown"
