"""Plans users mentioned and reminders they asked for: what, when, and whether the friend wrote."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Identity, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import FOLLOWUP_KINDS, FOLLOWUP_STATUSES, Base, created_now, one_of


class Followup(Base):
    __tablename__ = "followups"
    __table_args__ = (
        CheckConstraint(one_of("kind", FOLLOWUP_KINDS), name="kind"),
        CheckConstraint(one_of("status", FOLLOWUP_STATUSES), name="status"),
        Index("ix_followups_due_at", "due_at", postgresql_where=text("status = 'pending'")),
        Index("ix_followups_chat_id", "chat_id"),
        Index("uq_followups_message_id", "message_id", unique=True, postgresql_where=text("message_id IS NOT NULL")),
        {
            "comment": "Plans a user mentioned (asked about once, after) and reminders they asked for (sent "
            "once, at the time): what, when, and whether the friend wrote."
        },
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"))
    kind: Mapped[str]
    what: Mapped[str] = mapped_column(comment="the reminder's words, or the sentence that named the plan")
    topic: Mapped[str | None] = mapped_column(
        comment="the plan's event word: a later message with it needs no follow-up"
    )
    event_at: Mapped[datetime] = mapped_column(comment="when the plan happens, or the reminder's time")
    due_at: Mapped[datetime] = mapped_column(
        comment="when the friend writes: a reminder's time, a plan's FOLLOWUP_DELAY after at a polite hour"
    )
    status: Mapped[str] = mapped_column(server_default="pending")
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), comment="the user's message it was read from"
    )
    sent_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    claimed_by: Mapped[str | None] = mapped_column(comment="the scheduler writing it now; others skip it")
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = created_now()
