"""access and limits: who may talk, operators' decisions, tokens used per day, chats held

`user_access` keeps operators' word on a user (allowed, pending, refused, blocked, and their own
limits) apart from `users`, so it holds before the user's first message and after /forget.
`conversations.held_for/held_until` say why a chat is not answered now and until when; users
who talked before this revision count as already admitted (NEWCOMERS_PER_MINUTE).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCESS_LOG = """
    SELECT id, user_id, action, by_user_id, detail, created_at FROM access_decisions ORDER BY id
"""
ACCESS_LOG_COMMENT = (
    "One row per access decision or limit change: invited, allowed, approved, refused, blocked, limit_set; "
    "by_user_id is the operator (NULL for a code redeemed or the CLI)."
)


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column(
            "admitted_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when the user's first message was let through to the model (NEWCOMERS_PER_MINUTE counts these)",
        ),
    )
    op.execute("UPDATE users SET admitted_at = created_at")
    op.create_index(
        "ix_users_admitted_at", "users", ["admitted_at"], postgresql_where=sa.text("admitted_at IS NOT NULL")
    )
    op.execute(
        "COMMENT ON TABLE users IS 'Telegram users who talked to the bot: names, language, time zone, "
        "when first let through.'"
    )
    op.add_column(
        "conversations",
        sa.Column(
            "held_for",
            sa.Text(),
            nullable=True,
            comment="why the friend does not answer now (access or a limit); the user was told once. NULL: not held",
        ),
    )
    op.add_column(
        "conversations",
        sa.Column(
            "held_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when a limit's hold ends (then the messages kept meanwhile are answered together); "
            "NULL with held_for: until an operator lets the user in",
        ),
    )
    op.create_table(
        "user_access",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "access",
            sa.Text(),
            nullable=True,
            comment="allowed, pending (waiting for approval), refused, blocked; NULL: ACCESS_MODE decides",
        ),
        sa.Column(
            "limit_replies_per_minute",
            sa.Integer(),
            nullable=True,
            comment="this user's own LIMIT_REPLIES_PER_MINUTE (0: none); NULL: the setting",
        ),
        sa.Column(
            "limit_tokens_per_day",
            sa.BigInteger(),
            nullable=True,
            comment="this user's own LIMIT_TOKENS_PER_DAY (0: none); NULL: the setting",
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "access IS NULL OR access IN ('allowed', 'pending', 'refused', 'blocked')",
            name=op.f("ck_user_access_access"),
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_access")),
        comment="Operators' word on a user, kept apart from users so that it holds before their first "
        "message and after /forget: access and their own limits.",
    )
    op.create_table(
        "invite_codes",
        sa.Column("code_hash", sa.Text(), nullable=False, comment="hex SHA-256 of the code; the code is never stored"),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_by", sa.BigInteger(), nullable=True, comment="the operator's Telegram user id; NULL: the CLI"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_invite_codes")),
        comment="Invite codes (ACCESS_MODE=invite), kept as their SHA-256: a code redeemed lets its user in.",
    )
    op.create_table(
        "code_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_attempts")),
        comment="Wrong invite codes tried, by whom and when: 10 in an hour refuse a user's codes for an hour.",
    )
    op.create_index("ix_code_attempts_user_id_at", "code_attempts", ["user_id", "at"])
    op.create_index("ix_code_attempts_at", "code_attempts", ["at"])
    op.create_table(
        "usage_days",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False, comment="the day in the user's zone"),
        sa.Column("tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("replies", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_usage_days_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_usage_days")),
        comment="Model tokens (prompt and reply) each user used per local day, for LIMIT_TOKENS_PER_DAY.",
    )
    op.create_table(
        "access_decisions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "user_id", sa.BigInteger(), nullable=True, comment="the user decided about; NULL for an invite code created"
        ),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column(
            "by_user_id",
            sa.BigInteger(),
            nullable=True,
            comment="the operator; NULL for a code redeemed or the CLI",
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "action IN ('invited', 'allowed', 'approved', 'refused', 'blocked', 'limit_set')",
            name=op.f("ck_access_decisions_action"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_decisions")),
        comment="Every access decision and limit change: who, what, when (the view access_log shows it).",
    )
    op.create_index("ix_access_decisions_user_id", "access_decisions", ["user_id"])
    op.execute(f"CREATE VIEW access_log AS {ACCESS_LOG}")
    op.execute(f"COMMENT ON VIEW access_log IS '{ACCESS_LOG_COMMENT}'")


def downgrade() -> None:
    op.execute("DROP VIEW access_log")
    op.drop_table("access_decisions")
    op.drop_table("usage_days")
    op.drop_table("code_attempts")
    op.drop_table("invite_codes")
    op.drop_table("user_access")
    op.drop_column("conversations", "held_until")
    op.drop_column("conversations", "held_for")
    op.drop_index("ix_users_admitted_at", table_name="users")
    op.drop_column("users", "admitted_at")
    op.execute("COMMENT ON TABLE users IS 'Telegram users who talked to the bot: names, language, time zone.'")
