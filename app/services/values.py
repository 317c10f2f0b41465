"""Plain values the services hand out, and the conversions between the machine and the rows."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from app.prompt import Memory, Recalled
from app.services.gate import AccessRules
from fsm import Snapshot, Stage, Transition
from llm.types import ChatMessage
from scheduler.timing import CheckinPolicy, next_checkin
from storage.reply_path import ChatState
from storage.rows import ConversationRow, FsmColumns, MessageRow, Standing, TransitionRecord


@dataclass(frozen=True, slots=True)
class ReplyRules:
    """How replies are shared out and paced, the same for every part of the reply path."""

    worker: str  # this process, as leases and claims name it
    lease: timedelta = timedelta(seconds=15)  # how long a chat's responder may go silent before another takes over
    debounce: timedelta = timedelta(0)  # how long a reply waits for more of a burst
    recall: int = 8  # older lines each reply's read may bring back (0: recall off)
    default_tz: str = "UTC"
    history_window: int = 200  # messages read for a prompt; the token budget decides how many are used
    stream: bool = True  # show replies as they are written, where the outbox can
    access: AccessRules = field(default_factory=AccessRules)  # who may talk and how much (off unless set)


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What the next reply needs: the conversation, what it owes, its history and memory."""

    conversation: ConversationRow
    pending: list[MessageRow]
    recent: list[MessageRow]
    memory: Memory
    recalled: tuple[Recalled, ...] = ()  # older lines matching what is owed a reply, best first
    debounce: float = 0.0  # seconds to wait for more of a burst; history and memory are unread until then
    standing: Standing | None = None  # the user's access and what they used of their limits, as read
    first_unheard_voice: int | None = None  # Telegram's id of the oldest voice note still being heard, as read

    @property
    def behind_voice(self) -> bool:
        """Whether something owed was sent after a voice note that is still being heard: its reply
        should wait for the transcript, to answer both in the order they were sent."""
        unheard = self.first_unheard_voice
        return unheard is not None and any(
            m.telegram_message_id is not None and m.telegram_message_id > unheard for m in self.pending
        )


@dataclass(frozen=True, slots=True)
class DayEnded:
    """The user's previous message was on another day (in their zone): that day can be summarized."""

    day: date
    zone: ZoneInfo


@dataclass(frozen=True, slots=True)
class Received:
    """What happened to one incoming user message."""

    message_id: int | None
    stage: Stage | None = None
    transitions: tuple[Transition, ...] = ()
    responder: bool = False  # this call holds the chat's reply lease: it must answer
    duplicate: bool = False
    context: ReplyContext | None = None  # for the responder: what its first reply needs, read already
    day_ended: DayEnded | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    message_id: int
    text: str
    kind: str
    stage: Stage
    crisis: bool = False
    prompt: tuple[ChatMessage, ...] = field(default=(), repr=False)


def utcnow() -> datetime:
    return datetime.now(UTC)


def plan_checkin(
    policy: CheckinPolicy, last_activity: datetime, *, enabled: bool, unanswered: int = 0
) -> datetime | None:
    """When this chat's next check-in falls due (None: none may be sent), with a little jitter."""
    return next_checkin(
        last_activity=last_activity,
        policy=policy,
        unanswered=unanswered,
        enabled=enabled,
        active=True,
        spread=random.random(),
    )


def held_now(row: ConversationRow, now: datetime) -> bool:
    """The chat is held (access or a limit): a new message is stored, and waits."""
    return row.held_for is not None and (row.held_until is None or row.held_until > now)


def context_of(
    state: ChatState, rules: ReplyRules, *, also: MessageRow | None = None, now: ConversationRow | None = None
) -> ReplyContext:
    """The reply context from a read; `also`: a message stored after it, and `now`: the conversation
    as that store left it."""
    row = now or state.conversation
    pending = [*state.pending, also] if also else state.pending
    recent = [*state.recent, also][-rules.history_window :] if also else state.recent
    debounce = (pending[-1].created_at + rules.debounce - utcnow()).total_seconds() if pending else 0.0
    memory = Memory(row.memory_summary, tuple((d.day, d.text) for d in state.days))
    recalled = tuple(Recalled(r.id, r.text, r.created_at.date()) for r in state.recalled)
    return ReplyContext(
        row,
        pending,
        recent,
        memory,
        recalled=recalled,
        debounce=debounce,
        standing=state.standing,
        first_unheard_voice=state.first_unheard_voice,
    )


def transition_records(transitions: tuple[Transition, ...]) -> tuple[TransitionRecord, ...]:
    return tuple(
        TransitionRecord(
            from_state=t.from_stage.value if t.from_stage else None,
            to_state=t.to_stage.value,
            trigger=t.trigger.value,
            user_messages=t.messages,
            sentiment_negative=t.negative,
            sentiment_positive=t.positive,
        )
        for t in transitions
    )


def snapshot_of(row: ConversationRow) -> Snapshot:
    return Snapshot(
        stage=Stage(row.state),
        stage_before_repair=Stage(row.stage_before_repair) if row.stage_before_repair else None,
        messages=row.stage_messages,
        calm_streak=row.calm_streak,
    )


def fsm_columns(snapshot: Snapshot) -> FsmColumns:
    return FsmColumns(
        state=snapshot.stage.value,
        stage_before_repair=snapshot.stage_before_repair.value if snapshot.stage_before_repair else None,
        stage_messages=snapshot.messages,
        calm_streak=snapshot.calm_streak,
    )
