"""The relationship machine, without a database: every rule of the contract."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fsm import MessageEvent, RelationshipMachine, ResetEvent, SilenceEvent, Snapshot, Stage, Thresholds, Trigger

machine = RelationshipMachine()
CALM = MessageEvent(negative=0.0, positive=0.1)


def _run(
    snapshot: Snapshot, *events: MessageEvent | ResetEvent | SilenceEvent
) -> tuple[Snapshot, list[tuple[str | None, str, str]]]:
    log = []
    for event in events:
        outcome = machine.advance(snapshot, event)
        snapshot = outcome.snapshot
        log += [(t.from_stage, t.to_stage, t.trigger) for t in outcome.transitions]
    return snapshot, log


def test_a_new_conversation_starts_in_icebreaker() -> None:
    outcome = RelationshipMachine.begin()
    assert outcome.snapshot.stage is Stage.ICEBREAKER
    assert [(t.from_stage, t.to_stage, t.trigger) for t in outcome.transitions] == [
        (None, Stage.ICEBREAKER, Trigger.START)
    ]


def test_the_tenth_message_warms_and_the_thirtieth_makes_close() -> None:
    snapshot = Snapshot()
    changes = {}
    for number in range(1, 41):
        outcome = machine.advance(snapshot, CALM)
        snapshot = outcome.snapshot
        for transition in outcome.transitions:
            changes[number] = (transition.to_stage, transition.trigger, transition.messages)
    assert changes == {10: (Stage.WARMING, Trigger.COUNT, 10), 30: (Stage.CLOSE, Trigger.COUNT, 30)}


@pytest.mark.parametrize("stage", [Stage.ICEBREAKER, Stage.WARMING, Stage.CLOSE])
def test_negative_message_enters_repair_from_any_stage(stage: Stage) -> None:
    snapshot, log = _run(Snapshot(stage=stage, messages=31), MessageEvent(negative=0.31))
    assert log == [(stage, Stage.REPAIR, Trigger.NEGATIVE)]
    assert snapshot.stage_before_repair is stage


@pytest.mark.parametrize(("negative", "enters_repair"), [(0.3, False), (0.31, True), (0.0, False), (0.9, True)])
def test_negative_threshold_is_strictly_above(negative: float, enters_repair: bool) -> None:
    snapshot, _ = _run(Snapshot(stage=Stage.WARMING, messages=12), MessageEvent(negative=negative))
    assert (snapshot.stage is Stage.REPAIR) is enters_repair


def test_a_clearly_positive_message_recovers_at_once() -> None:
    repaired = Snapshot(stage=Stage.REPAIR, stage_before_repair=Stage.CLOSE, messages=40)
    snapshot, log = _run(repaired, MessageEvent(positive=0.51))
    assert log == [(Stage.REPAIR, Stage.CLOSE, Trigger.RECOVERED)]
    assert snapshot.stage_before_repair is None


def test_two_calm_messages_in_a_row_recover() -> None:
    repaired = Snapshot(stage=Stage.REPAIR, stage_before_repair=Stage.WARMING, messages=12)
    snapshot, log = _run(repaired, CALM)
    assert snapshot.stage is Stage.REPAIR and log == []
    snapshot, log = _run(snapshot, CALM)
    assert log == [(Stage.REPAIR, Stage.WARMING, Trigger.RECOVERED)]


def test_a_negative_message_in_repair_restarts_the_calm_count() -> None:
    repaired = Snapshot(stage=Stage.REPAIR, stage_before_repair=Stage.WARMING, messages=12)
    snapshot, log = _run(repaired, CALM, MessageEvent(negative=0.5), CALM)
    assert snapshot.stage is Stage.REPAIR and log == []


def test_count_rules_apply_after_recovery() -> None:
    repaired = Snapshot(stage=Stage.REPAIR, stage_before_repair=Stage.ICEBREAKER, messages=11)
    snapshot, log = _run(repaired, MessageEvent(positive=0.9))
    assert log == [
        (Stage.REPAIR, Stage.ICEBREAKER, Trigger.RECOVERED),
        (Stage.ICEBREAKER, Stage.WARMING, Trigger.COUNT),
    ]
    assert snapshot.stage is Stage.WARMING


@pytest.mark.parametrize("stage", list(Stage))
def test_crisis_enters_repair_whatever_the_scores(stage: Stage) -> None:
    snapshot, log = _run(
        Snapshot(stage=stage, stage_before_repair=Stage.WARMING if stage is Stage.REPAIR else None),
        MessageEvent(negative=0.0, positive=0.99, crisis=True),
    )
    assert snapshot.stage is Stage.REPAIR
    assert log == [(stage, Stage.REPAIR, Trigger.CRISIS)]


def test_reset_returns_to_icebreaker_and_restarts_the_count() -> None:
    snapshot, log = _run(Snapshot(stage=Stage.CLOSE, messages=45), ResetEvent(), CALM)
    assert log == [(Stage.CLOSE, Stage.ICEBREAKER, Trigger.RESET)]
    assert snapshot.stage is Stage.ICEBREAKER and snapshot.messages == 1


@pytest.mark.parametrize(
    ("stage", "silence", "cools"),
    [
        (Stage.CLOSE, timedelta(days=14, seconds=1), True),
        (Stage.CLOSE, timedelta(days=14), False),
        (Stage.CLOSE, timedelta(days=3), False),
        (Stage.WARMING, timedelta(days=30), False),
        (Stage.REPAIR, timedelta(days=30), False),
    ],
)
def test_long_silence_cools_close_to_warming(stage: Stage, silence: timedelta, cools: bool) -> None:
    _, log = _run(Snapshot(stage=stage, messages=50), SilenceEvent(silence))
    assert (log == [(Stage.CLOSE, Stage.WARMING, Trigger.COOLDOWN)]) is cools


def test_after_cooling_closeness_must_be_earned_again() -> None:
    snapshot, _ = _run(Snapshot(stage=Stage.CLOSE, messages=50), SilenceEvent(timedelta(days=20)), CALM)
    assert snapshot.stage is Stage.WARMING


def test_thresholds_come_from_the_persona() -> None:
    custom = RelationshipMachine(Thresholds(warming_at=2, close_at=3))
    snapshot = Snapshot()
    for _ in range(3):
        snapshot = custom.advance(snapshot, CALM).snapshot
    assert snapshot.stage is Stage.CLOSE


def test_transitions_carry_the_numbers_that_caused_them() -> None:
    outcome = machine.advance(Snapshot(stage=Stage.WARMING, messages=14), MessageEvent(negative=0.7, positive=0.05))
    (transition,) = outcome.transitions
    assert (transition.messages, transition.negative, transition.positive) == (15, 0.7, 0.05)


def test_the_diagram_is_drawn_from_the_machine() -> None:
    diagram = machine.diagram()
    assert "stateDiagram-v2" in diagram.splitlines()
    for line in ("icebreaker --> warming: count", "close --> warming: cooldown", "repair --> close: recovered"):
        assert line in diagram


def test_one_conversations_event_leaves_nothing_behind_for_the_next() -> None:
    """The machine is shared by every chat: what one event set (a remembered stage, a calm streak,
    transitions) is not in the next chat's outcome, even after an event that failed halfway."""
    own = RelationshipMachine()
    upset = own.advance(Snapshot(stage=Stage.CLOSE, messages=40), MessageEvent(negative=0.9, positive=0.0))
    assert upset.snapshot.stage is Stage.REPAIR and upset.snapshot.stage_before_repair is Stage.CLOSE

    fresh = own.advance(Snapshot(messages=3), CALM)
    assert fresh.snapshot == Snapshot(stage=Stage.ICEBREAKER, messages=4)
    assert fresh.transitions == ()

    failing = RelationshipMachine(Thresholds(warming_at=10))
    failing.limits = None  # type: ignore[assignment]  # a condition that raises mid-event
    with pytest.raises(AttributeError):
        failing.advance(
            Snapshot(stage=Stage.REPAIR, stage_before_repair=Stage.WARMING, messages=9, calm_streak=1),
            MessageEvent(negative=0.0, positive=0.9),
        )
    failing.limits = Thresholds(warming_at=10)
    after = failing.advance(Snapshot(messages=2), CALM)
    assert after.snapshot == Snapshot(stage=Stage.ICEBREAKER, messages=3)
    assert after.transitions == ()
