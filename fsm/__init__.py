"""The relationship state machine: pure, synchronous, no I/O."""

from fsm.machine import RelationshipMachine
from fsm.model import Event, MessageEvent, Outcome, ResetEvent, SilenceEvent, Snapshot, Transition
from fsm.rules import Thresholds
from fsm.states import Stage, Trigger

__all__ = [
    "Event",
    "MessageEvent",
    "Outcome",
    "RelationshipMachine",
    "ResetEvent",
    "SilenceEvent",
    "Snapshot",
    "Stage",
    "Thresholds",
    "Transition",
    "Trigger",
]
