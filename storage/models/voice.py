"""Voice and video notes as they arrived, kept before they are heard: what the transcript came from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Identity, Index, Integer, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import VOICE_KINDS, VOICE_STATUSES, Base, created_now, one_of


class VoiceNote(Base):
    __tablename__ = "voice_notes"
    __table_args__ = (
        CheckConstraint(one_of("kind", VOICE_KINDS), name="kind"),
        CheckConstraint(one_of("status", VOICE_STATUSES), name="status"),
        UniqueConstraint("chat_id", "telegram_message_id"),
        Index("ix_voice_notes_waiting", "created_at", postgresql_where=text("status = 'waiting'")),
        {
            "comment": "Voice and video notes, stored when they arrive (before anything can fail), then "
            "downloaded, decoded and transcribed once: the transcript is the message (kind voice) they became."
        },
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("conversations.chat_id", ondelete="CASCADE"))
    telegram_message_id: Mapped[int]
    kind: Mapped[str]
    file_id: Mapped[str] = mapped_column(comment="Telegram's id of the file, for getFile")
    duration_seconds: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(comment="as Telegram reported it; NULL when it did not")
    status: Mapped[str] = mapped_column(
        server_default="waiting", comment="waiting: not heard yet; heard: transcribed; refused: answered kindly"
    )
    outcome: Mapped[str | None] = mapped_column(
        comment="why a note was refused: too_long, too_big, undecodable, unclear, no_recognizer, gave_up"
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), comment="the message it became (its transcript)"
    )
    seconds_heard: Mapped[float | None] = mapped_column(Float, comment="the audio's length as decoded")
    claimed_by: Mapped[str | None] = mapped_column(comment="the bot process transcribing it now; others skip it")
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = created_now()
    heard_at: Mapped[datetime | None]
