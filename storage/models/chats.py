"""Users, their conversations and messages, the relationship's history and memory."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import (
    KINDS,
    ROLES,
    STATES,
    TRIGGERS,
    Base,
    created_now,
    one_of,
)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_admitted_at", "admitted_at", postgresql_where=text("admitted_at IS NOT NULL")),
        {"comment": "Telegram users who talked to the bot: names, language, time zone, when first let through."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    username: Mapped[str | None]
    first_name: Mapped[str | None]
    language_code: Mapped[str | None]
    timezone: Mapped[str | None] = mapped_column(comment="IANA zone set with /timezone")
    admitted_at: Mapped[datetime | None] = mapped_column(
        comment="when the user's first message was let through to the model (NEWCOMERS_PER_MINUTE counts these)"
    )
    created_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint(one_of("state", STATES), name="state"),
        CheckConstraint(
            f"stage_before_repair IS NULL OR {one_of('stage_before_repair', STATES)}",
            name="stage_before_repair",
        ),
        CheckConstraint(one_of("prompt_stage", STATES), name="prompt_stage"),
        Index(
            "ix_conversations_next_checkin_at",
            "next_checkin_at",
            postgresql_where=text("next_checkin_at IS NOT NULL"),
        ),
        Index(
            "ix_conversations_close_silence",
            "last_user_message_at",
            postgresql_where=text("state = 'close'"),
        ),
        {"comment": "One row per chat: the relationship stage, counters, rolling memory, check-in plan."},
    )

    chat_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(server_default="icebreaker")
    stage_before_repair: Mapped[str | None]
    user_messages: Mapped[int] = mapped_column(Integer, server_default="0", comment="all text messages from the user")
    stage_messages: Mapped[int] = mapped_column(
        Integer, server_default="0", comment="text messages since the last reset; drives the count rule"
    )
    calm_streak: Mapped[int] = mapped_column(
        Integer, server_default="0", comment="non-negative messages in a row while in repair"
    )
    bot_messages: Mapped[int] = mapped_column(Integer, server_default="0")
    last_user_message_at: Mapped[datetime | None]
    last_bot_message_at: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, server_default="true", comment="false once the user blocked the bot")
    checkins_enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    checkins_unanswered: Mapped[int] = mapped_column(Integer, server_default="0")
    last_checkin_at: Mapped[datetime | None]
    next_checkin_at: Mapped[datetime | None] = mapped_column(
        comment="when the next check-in falls due (a claim pushes it by its lease); NULL: none planned"
    )
    reply_lease_until: Mapped[datetime | None] = mapped_column(
        comment="a worker is writing the reply for this chat until then; others only store messages"
    )
    reply_lease_owner: Mapped[str | None] = mapped_column(
        comment="the worker holding the reply lease; it hands the lease back when it stops"
    )
    history_since_id: Mapped[int] = mapped_column(
        server_default="0", comment="prompts use messages after this id; /clear moves it"
    )
    memory_summary: Mapped[str | None] = mapped_column(comment="rolling summary of older turns")
    summarized_through_id: Mapped[int] = mapped_column(
        server_default="0", comment="last message id folded into memory_summary"
    )
    prompt_stage: Mapped[str] = mapped_column(
        server_default="icebreaker",
        comment="the stage whose system prompt opens the chat's prompts until the next fold or /clear; "
        "a later stage change is a note with the message it came with, so the prompt's start stays the same",
    )
    held_for: Mapped[str | None] = mapped_column(
        comment="why the friend does not answer now (access or a limit); the user was told once. NULL: not held"
    )
    held_until: Mapped[datetime | None] = mapped_column(
        comment="when a limit's hold ends (then the messages kept meanwhile are answered together); "
        "NULL with held_for: until an operator lets the user in"
    )
    created_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(one_of("role", ROLES), name="role"),
        CheckConstraint(one_of("kind", KINDS), name="kind"),
        Index("ix_messages_chat_id_id", "chat_id", "id"),
        Index(
            "ix_messages_unanswered",
            "chat_id",
            postgresql_where=text("role = 'user' AND answered_at IS NULL"),
        ),
        Index(
            "uq_messages_chat_id_telegram_message_id",
            "chat_id",
            "telegram_message_id",
            unique=True,
            postgresql_where=text("role = 'user' AND telegram_message_id IS NOT NULL"),
        ),
        # fastupdate off: a search never scans a pending list of recent entries (each insert
        # updates the index itself, a few more microseconds per stored message).
        Index(
            "ix_messages_chat_id_search",
            "chat_id",
            "search",
            postgresql_using="gin",
            postgresql_where=text("search IS NOT NULL"),
            postgresql_with={"fastupdate": "off"},
        ),
        {"comment": "Every message in and out, with sentiment scores and Telegram ids."},
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"))
    role: Mapped[str]
    kind: Mapped[str]
    text: Mapped[str]
    telegram_message_id: Mapped[int | None]
    update_id: Mapped[int | None]
    sentiment_negative: Mapped[float | None] = mapped_column(Float)
    sentiment_positive: Mapped[float | None] = mapped_column(Float)
    answered_at: Mapped[datetime | None] = mapped_column(
        comment="user messages: when a reply to it was stored; NULL: still owed one"
    )
    delivered_at: Mapped[datetime | None] = mapped_column(
        comment="bot messages: when Telegram accepted it; NULL: not yet sent"
    )
    search: Mapped[str | None] = mapped_column(
        TSVECTOR, comment="user text messages: the words recall searches, in the user's language (filled by a trigger)"
    )
    recall_note: Mapped[str | None] = mapped_column(
        comment="user messages: the older lines recall put before this message in the prompt that answered it, "
        "kept so later prompts show the turn the same way"
    )
    recallable: Mapped[bool] = mapped_column(
        Boolean,
        server_default="true",
        comment="false once /memory forget removed it from what the friend recalls and shows the model; "
        "operators still see it until /forget",
    )
    created_at: Mapped[datetime] = created_now()


class MemoryForget(Base):
    __tablename__ = "memory_forgets"
    __table_args__ = (
        {"comment": "Each /memory forget a user confirmed: the words and how much of the memory they removed."},
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"), index=True)
    words: Mapped[str] = mapped_column(comment="what the user asked to forget, as written")
    messages: Mapped[int] = mapped_column(Integer, comment="messages no longer recalled or shown to the model")
    notebook_lines: Mapped[int] = mapped_column(Integer, comment="sentences removed from the rolling summary")
    day_lines: Mapped[int] = mapped_column(Integer, comment="sentences removed from day summaries")
    created_at: Mapped[datetime] = created_now()


class StateTransition(Base):
    __tablename__ = "state_transitions"
    __table_args__ = (
        CheckConstraint(one_of("trigger", TRIGGERS), name="trigger"),
        CheckConstraint(one_of("to_state", STATES), name="to_state"),
        Index("ix_state_transitions_chat_id_id", "chat_id", "id"),
        {"comment": "Every change of relationship stage, with the trigger and the numbers behind it."},
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"))
    from_state: Mapped[str | None]
    to_state: Mapped[str]
    trigger: Mapped[str]
    user_messages: Mapped[int] = mapped_column(Integer, comment="the FSM's message count at the time")
    sentiment_negative: Mapped[float | None] = mapped_column(Float)
    sentiment_positive: Mapped[float | None] = mapped_column(Float)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), comment="the message that caused it, if any"
    )
    created_at: Mapped[datetime] = created_now()


class DailySummary(Base):
    __tablename__ = "daily_summaries"
    __table_args__ = {"comment": "What happened in a chat on one calendar day, for memory across days."}

    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    text: Mapped[str]
    through_message_id: Mapped[int]
    created_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()


class ProcessedUpdate(Base):
    __tablename__ = "processed_updates"
    __table_args__ = (
        Index("ix_processed_updates_received_at", "received_at"),
        {"comment": "Telegram update ids already taken in, so a redelivered update is not handled twice."},
    )

    update_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    chat_id: Mapped[int | None] = mapped_column(comment="cleared by /forget")
    received_at: Mapped[datetime] = created_now()


class RecallCommonWord(Base):
    __tablename__ = "recall_common_words"
    __table_args__ = (
        {
            "comment": "Words too common across all messages to say what to recall (in more than 0.2 % of them, "
            "from PostgreSQL's column statistics), refreshed hourly by aifriend_refresh_common_words()."
        },
    )

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    shipped: Mapped[bool] = mapped_column(
        Boolean,
        server_default="false",
        comment="a shipped everyday word, kept for good; false: found by the hourly refresh",
    )
