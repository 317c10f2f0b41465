"""What repositories take and give back: frozen values, read from rows by column name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class UserInfo:
    """The Telegram user behind a chat, as their latest update names them."""

    user_id: int
    username: str | None = None
    first_name: str | None = None
    language_code: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationRow:
    chat_id: int
    user_id: int
    state: str
    stage_before_repair: str | None
    stage_messages: int
    calm_streak: int
    user_messages: int
    bot_messages: int
    last_user_message_at: datetime | None
    last_bot_message_at: datetime | None
    active: bool
    checkins_enabled: bool
    checkins_unanswered: int
    last_checkin_at: datetime | None
    next_checkin_at: datetime | None
    reply_lease_until: datetime | None
    reply_lease_owner: str | None
    history_since_id: int
    memory_summary: str | None
    summarized_through_id: int
    prompt_stage: str  # the stage whose system prompt opens the prompts (changed at folds and /clear)
    timezone: str | None
    username: str | None = None
    first_name: str | None = None
    held_for: str | None = None  # why the friend does not answer now; the user was told
    held_until: datetime | None = None  # when that ends; None with `held_for`: until let in
    admitted_at: datetime | None = None  # the user's first message went to the model then
    language_code: str | None = None  # as Telegram last reported it


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a user stands before a reply: operators' word on them and what they used of their limits."""

    access: str | None  # allowed, pending, refused, blocked; None: the access mode decides
    replies_limit: int  # replies in any 60 seconds (0: none), the user's own or the setting
    replies_in_window: int  # replies in the last 60 seconds, up to `replies_limit`
    window_started: datetime | None  # the oldest of those
    tokens_limit: int  # model tokens per local day (0: none)
    tokens_today: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    chat_id: int
    role: str
    kind: str
    text: str
    created_at: datetime
    telegram_message_id: int | None = None
    answered_at: datetime | None = None
    delivered_at: datetime | None = None
    sentiment_negative: float | None = None
    sentiment_positive: float | None = None
    recall_note: str | None = None  # what recall added before this message when it was answered


@dataclass(frozen=True, slots=True)
class DailySummaryRow:
    day: date
    text: str


@dataclass(frozen=True, slots=True)
class RecalledRow:
    """An older user message found by full-text search."""

    id: int
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FsmColumns:
    """The columns of a conversation that the relationship machine reads and writes."""

    state: str
    stage_before_repair: str | None
    stage_messages: int
    calm_streak: int


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One change of stage as `state_transitions` keeps it."""

    from_state: str | None
    to_state: str
    trigger: str
    user_messages: int
    sentiment_negative: float | None
    sentiment_positive: float | None
