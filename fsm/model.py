"""Plain values in and out of the machine: what is stored, what happened, what changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from fsm.states import Stage, Trigger


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The part of a stored conversation the machine reads and writes."""

    stage: Stage = Stage.ICEBREAKER
    stage_before_repair: Stage | None = None
    messages: int = 0
    calm_streak: int = 0


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A user's text message with its scores."""

    negative: float = 0.0
    positive: float = 0.0
    crisis: bool = False


@dataclass(frozen=True, slots=True)
class ResetEvent:
    """`/clear`: back to the beginning."""


@dataclass(frozen=True, slots=True)
class SilenceEvent:
    """The sweep noticed the user has been quiet this long."""

    silence: timedelta


Event = MessageEvent | ResetEvent | SilenceEvent


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of stage and the numbers that caused it."""

    from_stage: Stage | None
    to_stage: Stage
    trigger: Trigger
    messages: int
    negative: float | None = None
    positive: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    snapshot: Snapshot
    transitions: tuple[Transition, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.transitions)
