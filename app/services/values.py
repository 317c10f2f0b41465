"""Plain values the conversation service hands out, and the FSM <-> row conversions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.prompt import Memory, Recalled
from fsm import Snapshot, Stage, Transition
from llm.types import ChatMessage
from storage.conversations import TransitionRecord
from storage.dto import ConversationRow, MessageRow

if TYPE_CHECKING:
    from app.services.replies import Written


@dataclass(frozen=True, slots=True)
class Received:
    """What happened to one incoming user message."""

    message_id: int | None
    stage: Stage | None = None
    transitions: tuple[Transition, ...] = ()
    responder: bool = False
    duplicate: bool = False
    context: ReplyContext | None = None  # for the responder: what its first reply needs, read already
    ahead: asyncio.Task[Written] | None = None  # for the responder: that reply, already being written


@dataclass(frozen=True, slots=True)
class Reply:
    message_id: int
    text: str
    kind: str
    stage: Stage
    crisis: bool = False
    prompt: tuple[ChatMessage, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class ReplyContext:
    conversation: ConversationRow
    pending: list[MessageRow]
    recent: list[MessageRow]
    memory: Memory
    recalled: tuple[Recalled, ...] = ()  # older lines matching what is owed a reply, best first
    debounce: float = 0.0  # seconds to wait for more of a burst; history and memory are unread until then


def utcnow() -> datetime:
    return datetime.now(UTC)


def transition_records(transitions: tuple[Transition, ...]) -> list[TransitionRecord]:
    return [
        TransitionRecord(
            from_state=t.from_stage.value if t.from_stage else None,
            to_state=t.to_stage.value,
            trigger=t.trigger.value,
            user_messages=t.messages,
            sentiment_negative=t.negative,
            sentiment_positive=t.positive,
        )
        for t in transitions
    ]


def snapshot_of(row: ConversationRow) -> Snapshot:
    return Snapshot(
        stage=Stage(row.state),
        stage_before_repair=Stage(row.stage_before_repair) if row.stage_before_repair else None,
        messages=row.stage_messages,
        calm_streak=row.calm_streak,
    )


def fsm_columns(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "state": snapshot.stage.value,
        "stage_before_repair": snapshot.stage_before_repair.value if snapshot.stage_before_repair else None,
        "stage_messages": snapshot.messages,
        "calm_streak": snapshot.calm_streak,
    }
