"""The thresholds of the contract and the small named conditions built on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Numbers the persona file may tune; defaults are the contract's."""

    warming_at: int = 10
    close_at: int = 30
    negative_above: float = 0.3
    recovered_positive_above: float = 0.5
    recovered_calm_messages: int = 2
    cooldown_after: timedelta = timedelta(days=14)


def is_negative(negative: float, limits: Thresholds) -> bool:
    return negative > limits.negative_above


def has_recovered(positive: float, calm_streak: int, limits: Thresholds) -> bool:
    return positive > limits.recovered_positive_above or calm_streak >= limits.recovered_calm_messages


def has_cooled(silence: timedelta, limits: Thresholds) -> bool:
    return silence > limits.cooldown_after
