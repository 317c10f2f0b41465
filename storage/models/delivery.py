"""Getting messages out and updates in: check-in claims, send pacing, the outbox, dead letters, the webhook."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import (
    CHECKIN_STATUSES,
    OUTBOX_METHODS,
    OUTBOX_STATUSES,
    Base,
    created_now,
    one_of,
)


class Checkin(Base):
    __tablename__ = "checkins"
    __table_args__ = (
        CheckConstraint(one_of("status", CHECKIN_STATUSES), name="status"),
        Index("uq_checkins_chat_id_due_at", "chat_id", "due_at", unique=True),
        {"comment": "Each proactive check-in: which worker claimed it, until when, and how it ended."},
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(server_default="claimed")
    claimed_by: Mapped[str]
    lease_until: Mapped[datetime]
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    note: Mapped[str | None]
    created_at: Mapped[datetime] = created_now()
    finished_at: Mapped[datetime | None]


class SendSlot(Base):
    __tablename__ = "send_slots"
    __table_args__ = {"comment": "Pacing shared by every worker: the next moment a proactive message may go out."}

    name: Mapped[str] = mapped_column(primary_key=True)
    next_slot_at: Mapped[datetime] = created_now()


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(one_of("method", OUTBOX_METHODS), name="method"),
        CheckConstraint(one_of("status", OUTBOX_STATUSES), name="status"),
        Index("ix_outbox_pending", "chat_id", "id", postgresql_where=text("status = 'pending'")),
        {
            "comment": "Everything on its way to Telegram, in order per chat: pending sends with their attempts and "
            "claims (a sent row is deleted; its message row records the delivery), and sends given up."
        },
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(comment="no foreign key: an answer may outlive the conversation (/forget)")
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), comment="the stored message this send delivers, if any"
    )
    last_piece: Mapped[bool] = mapped_column(
        Boolean, server_default="true", comment="sending this row completes the message (long ones go in pieces)"
    )
    method: Mapped[str]
    payload: Mapped[dict[str, object]] = mapped_column(JSONB, comment="the Bot API call's parameters")
    status: Mapped[str] = mapped_column(server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = created_now()
    claimed_by: Mapped[str | None] = mapped_column(comment="the worker sending it now")
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None]
    created_at: Mapped[datetime] = created_now()
    finished_at: Mapped[datetime | None] = mapped_column(comment="when it was given up")


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("uq_dead_letters_update_id", "update_id", unique=True, postgresql_where=text("update_id IS NOT NULL")),
        {
            "comment": "Telegram updates that could not be handled after retries (or not even read), set aside "
            "so they never block the others; raw holds the update as received, escaped."
        },
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    update_id: Mapped[int | None]
    chat_id: Mapped[int | None] = mapped_column(comment="NULL when the update names no chat that can be stored")
    error: Mapped[str]
    raw: Mapped[str]
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_now()


class WebhookRegistration(Base):
    __tablename__ = "webhook_registrations"
    __table_args__ = (
        {
            "comment": "The webhook configuration last registered with Telegram, per bot: replicas call "
            "setWebhook only when theirs differs (url, secret, update types), never at every start."
        },
    )

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    url: Mapped[str]
    fingerprint: Mapped[str] = mapped_column(comment="sha256 of url, secret and update types; never the secret itself")
    registered_by: Mapped[str]
    registered_at: Mapped[datetime] = created_now()
