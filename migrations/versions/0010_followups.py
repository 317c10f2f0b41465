"""follow-ups: plans users mentioned and reminders they asked for

`followups` holds each (what, when, when the friend writes, whether it did), the view
`followup_schedule` shows them to operators, and `messages.kind` admits `followup`, `reminder`
and `voice`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = "'text', 'reply', 'checkin', 'greeting', 'command', 'fallback', 'other'"
KINDS = KINDS_BEFORE + ", 'voice', 'followup', 'reminder'"
SCHEDULE = """
    SELECT id, chat_id, kind, what, event_at, due_at, status, created_at FROM followups ORDER BY due_at, id
"""
SCHEDULE_COMMENT = (
    "One row per plan or reminder: kind (plan or reminder), what, event_at, due_at (when the friend writes), "
    "status (pending, sent, cancelled, skipped)."
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_messages_kind"), "messages", type_="check")
    op.create_check_constraint(op.f("ck_messages_kind"), "messages", f"kind IN ({KINDS})")
    op.create_table(
        "followups",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column(
            "what", sa.Text(), nullable=False, comment="the reminder's words, or the sentence that named the plan"
        ),
        sa.Column(
            "topic",
            sa.Text(),
            nullable=True,
            comment="the plan's event word: a later message with it needs no follow-up",
        ),
        sa.Column(
            "event_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="when the plan happens, or the reminder's time",
        ),
        sa.Column(
            "due_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="when the friend writes: a reminder's time, a plan's FOLLOWUP_DELAY after at a polite hour",
        ),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True, comment="the user's message it was read from"),
        sa.Column("sent_message_id", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True, comment="the scheduler writing it now; others skip it"),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('plan', 'reminder')", name=op.f("ck_followups_kind")),
        sa.CheckConstraint("status IN ('pending', 'sent', 'cancelled', 'skipped')", name=op.f("ck_followups_status")),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["conversations.chat_id"],
            name=op.f("fk_followups_chat_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_followups_message_id_messages"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["sent_message_id"],
            ["messages.id"],
            name=op.f("fk_followups_sent_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followups")),
        comment="Plans a user mentioned (asked about once, after) and reminders they asked for (sent once, at "
        "the time): what, when, and whether the friend wrote.",
    )
    op.create_index("ix_followups_chat_id", "followups", ["chat_id"])
    op.create_index("ix_followups_due_at", "followups", ["due_at"], postgresql_where=sa.text("status = 'pending'"))
    op.execute(f"CREATE VIEW followup_schedule AS {SCHEDULE}")
    op.execute(f"COMMENT ON VIEW followup_schedule IS '{SCHEDULE_COMMENT}'")


def downgrade() -> None:
    op.execute("DROP VIEW followup_schedule")
    op.drop_table("followups")
    op.execute("DELETE FROM messages WHERE kind IN ('voice', 'followup', 'reminder')")
    op.drop_constraint(op.f("ck_messages_kind"), "messages", type_="check")
    op.create_check_constraint(op.f("ck_messages_kind"), "messages", f"kind IN ({KINDS_BEFORE})")
