"""voice_notes: voice and video notes kept when they arrive, then heard once

A note is stored before anything can fail (file id, duration, size), then downloaded, decoded and
transcribed by one bot process (a claim with a lease; the healer takes over an abandoned one, at
most three times); the transcript becomes the user's message, kind `voice`, which recall indexes
like typed text.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_TRIGGER = """
    CREATE TRIGGER messages_search BEFORE INSERT ON messages
       FOR EACH ROW WHEN (NEW.role = 'user' AND NEW.kind IN ({kinds})) EXECUTE FUNCTION aifriend_message_search()
"""


def upgrade() -> None:
    op.create_table(
        "voice_notes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("file_id", sa.Text(), nullable=False, comment="Telegram's id of the file, for getFile"),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column(
            "size_bytes", sa.BigInteger(), nullable=True, comment="as Telegram reported it; NULL when it did not"
        ),
        sa.Column(
            "status",
            sa.Text(),
            server_default="waiting",
            nullable=False,
            comment="waiting: not heard yet; heard: transcribed; refused: answered kindly",
        ),
        sa.Column(
            "outcome",
            sa.Text(),
            nullable=True,
            comment="why a note was refused: too_long, too_big, undecodable, unclear, no_recognizer, gave_up",
        ),
        sa.Column("message_id", sa.BigInteger(), nullable=True, comment="the message it became (its transcript)"),
        sa.Column("seconds_heard", sa.Float(), nullable=True, comment="the audio's length as decoded"),
        sa.Column(
            "claimed_by", sa.Text(), nullable=True, comment="the bot process transcribing it now; others skip it"
        ),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("heard_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('voice', 'video_note')", name=op.f("ck_voice_notes_kind")),
        sa.CheckConstraint("status IN ('waiting', 'heard', 'refused')", name=op.f("ck_voice_notes_status")),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["conversations.chat_id"],
            name=op.f("fk_voice_notes_chat_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_voice_notes_message_id_messages"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_notes")),
        sa.UniqueConstraint("chat_id", "telegram_message_id", name=op.f("uq_voice_notes_chat_id_telegram_message_id")),
        comment="Voice and video notes, stored when they arrive (before anything can fail), then downloaded, decoded and transcribed once: the transcript is the message (kind voice) they became.",
    )
    op.create_index(
        "ix_voice_notes_waiting",
        "voice_notes",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'waiting'"),
    )
    # A voice note's transcript is recalled like typed text.
    op.execute("DROP TRIGGER messages_search ON messages")
    op.execute(SEARCH_TRIGGER.format(kinds="'text', 'voice'"))


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_search ON messages")
    op.execute(SEARCH_TRIGGER.format(kinds="'text'"))
    op.drop_index("ix_voice_notes_waiting", table_name="voice_notes", postgresql_where=sa.text("status = 'waiting'"))
    op.drop_table("voice_notes")
