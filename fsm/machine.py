"""One `transitions` machine for every conversation; each call borrows it for one event.

The transition table is data. Conditions are small named methods of a model that is loaded
from the stored snapshot and the event at the start of every call; callbacks only change that
model, so a failed callback can never leave a half-applied state behind.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from transitions import EventData, Machine

from fsm import rules
from fsm.model import Event, MessageEvent, Outcome, ResetEvent, SilenceEvent, Snapshot, Transition
from fsm.rules import Thresholds
from fsm.states import Stage, Trigger

# States are given by value so the diagram and the model speak the stored names.
_STATES = [stage.value for stage in Stage]
_LEVELS = [Stage.ICEBREAKER.value, Stage.WARMING.value, Stage.CLOSE.value]

TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "count", "source": "icebreaker", "dest": "warming", "conditions": "reached_warming"},
    {"trigger": "count", "source": "warming", "dest": "close", "conditions": "reached_close"},
    {"trigger": "negative", "source": _LEVELS, "dest": "repair", "before": "remember_stage"},
    {"trigger": "crisis", "source": _LEVELS, "dest": "repair", "before": "remember_stage"},
    {"trigger": "crisis", "source": "repair", "dest": "repair"},
    *(
        {"trigger": "recovered", "source": "repair", "dest": stage, "conditions": f"returns_to_{stage}"}
        for stage in _LEVELS
    ),
    {"trigger": "reset", "source": _STATES, "dest": "icebreaker"},
    {"trigger": "cooldown", "source": "close", "dest": "warming", "conditions": "cooled_down"},
]


def _ends(event: EventData) -> tuple[Stage, Stage]:
    assert event.transition is not None and event.transition.dest is not None
    return Stage(event.transition.source), Stage(event.transition.dest)


class _Dialog:
    """The machine's model for one event: snapshot fields plus what the event carries."""

    state: str

    def __init__(self, limits: Thresholds) -> None:
        self.load(Snapshot(), limits)

    def load(self, snapshot: Snapshot, limits: Thresholds) -> None:
        """Start over from `snapshot` (the machine's state is set by the caller)."""
        self.limits = limits
        self.remembered = snapshot.stage_before_repair
        self.messages = snapshot.messages
        self.calm_streak = snapshot.calm_streak
        self.negative_score: float | None = None
        self.positive_score: float | None = None
        self.silence: timedelta | None = None
        self.log: list[Transition] = []

    def reached_warming(self, _: EventData) -> bool:
        return self.messages >= self.limits.warming_at

    def reached_close(self, _: EventData) -> bool:
        return self.messages >= self.limits.close_at

    def returns_to_icebreaker(self, _: EventData) -> bool:
        return self.remembered in (Stage.ICEBREAKER, None)

    def returns_to_warming(self, _: EventData) -> bool:
        return self.remembered == Stage.WARMING

    def returns_to_close(self, _: EventData) -> bool:
        return self.remembered == Stage.CLOSE

    def cooled_down(self, _: EventData) -> bool:
        return self.silence is not None and rules.has_cooled(self.silence, self.limits)

    def remember_stage(self, event: EventData) -> None:
        self.remembered = _ends(event)[0]

    def record(self, event: EventData) -> None:
        trigger = Trigger(event.event.name)
        source, dest = _ends(event)
        self.log.append(
            Transition(
                from_stage=source,
                to_stage=dest,
                trigger=trigger,
                messages=self.messages,
                negative=self.negative_score,
                positive=self.positive_score,
            )
        )
        if trigger in (Trigger.RECOVERED, Trigger.RESET):
            self.remembered = None
            self.calm_streak = 0
        if trigger is Trigger.RESET:
            self.messages = 0
        elif trigger is Trigger.COOLDOWN:
            # Closeness is earned again: the count restarts where warming begins.
            self.messages = self.limits.warming_at


class RelationshipMachine:
    """Decides stage changes; build once, call `advance` for every event."""

    def __init__(self, limits: Thresholds | None = None) -> None:
        self.limits = limits or Thresholds()
        self._machine = Machine(
            model=None,
            states=_STATES,
            transitions=TRANSITIONS,
            initial="icebreaker",
            auto_transitions=False,
            send_event=True,
            after_state_change="record",
        )
        self._borrowed = threading.local()

    @staticmethod
    def begin() -> Outcome:
        """A new conversation: it starts in icebreaker (trigger `start`)."""
        start = Transition(from_stage=None, to_stage=Stage.ICEBREAKER, trigger=Trigger.START, messages=0)
        return Outcome(Snapshot(), (start,))

    def _dialog(self) -> _Dialog:
        """This thread's model, bound to the machine once: binding one per event (`add_model`) was
        most of an event's cost. `advance` never yields, so one per thread is never shared."""
        dialog: _Dialog | None = getattr(self._borrowed, "dialog", None)
        if dialog is None:
            dialog = self._borrowed.dialog = _Dialog(self.limits)
            self._machine.add_model(dialog, initial="icebreaker")
        return dialog

    def advance(self, snapshot: Snapshot, event: Event) -> Outcome:
        dialog = self._dialog()
        dialog.load(snapshot, self.limits)
        self._machine.set_state(snapshot.stage.value, model=dialog)
        self._apply(dialog, event)
        stage = Stage(dialog.state)
        after = Snapshot(
            stage=stage,
            stage_before_repair=dialog.remembered if stage is Stage.REPAIR else None,
            messages=dialog.messages,
            calm_streak=dialog.calm_streak if stage is Stage.REPAIR else 0,
        )
        return Outcome(after, tuple(dialog.log))

    def _apply(self, dialog: _Dialog, event: Event) -> None:
        if isinstance(event, ResetEvent):
            dialog.trigger(Trigger.RESET)  # type: ignore[attr-defined]
        elif isinstance(event, SilenceEvent):
            dialog.silence = event.silence
            dialog.may_trigger(Trigger.COOLDOWN) and dialog.trigger(Trigger.COOLDOWN)  # type: ignore[attr-defined]
        else:
            self._on_message(dialog, event)

    def _on_message(self, dialog: _Dialog, event: MessageEvent) -> None:
        dialog.messages += 1
        dialog.negative_score, dialog.positive_score = event.negative, event.positive
        if event.crisis:
            dialog.calm_streak = 0
            dialog.trigger(Trigger.CRISIS)  # type: ignore[attr-defined]
            return
        if rules.is_negative(event.negative, self.limits):
            dialog.calm_streak = 0
            if dialog.state != Stage.REPAIR:
                dialog.trigger(Trigger.NEGATIVE)  # type: ignore[attr-defined]
            return
        if dialog.state == Stage.REPAIR:
            dialog.calm_streak += 1
            if not rules.has_recovered(event.positive, dialog.calm_streak, self.limits):
                return
            dialog.trigger(Trigger.RECOVERED)  # type: ignore[attr-defined]
        while dialog.may_trigger(Trigger.COUNT):  # type: ignore[attr-defined]
            dialog.trigger(Trigger.COUNT)  # type: ignore[attr-defined]

    def diagram(self) -> str:
        """The machine as a Mermaid `stateDiagram-v2`, drawn from the same table."""
        from transitions.extensions import GraphMachine

        graph = GraphMachine(
            model=None,
            states=_STATES,
            transitions=TRANSITIONS,
            initial="icebreaker",
            auto_transitions=False,
            graph_engine="mermaid",
            show_conditions=True,
            title="aifriend relationship",
        )
        holder = _Dialog(self.limits)
        graph.add_model(holder, initial="icebreaker")
        return str(holder.get_graph().draw(None))  # type: ignore[attr-defined]
