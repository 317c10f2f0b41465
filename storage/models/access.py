"""Who may talk and how much: invite codes, wrong codes tried, tokens used per day, operators' decisions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Identity, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import ACCESS, ACCESS_ACTIONS, Base, created_now, one_of


class UserAccess(Base):
    __tablename__ = "user_access"
    __table_args__ = (
        CheckConstraint(f"access IS NULL OR {one_of('access', ACCESS)}", name="access"),
        {
            "comment": "Operators' word on a user, kept apart from users so that it holds before their first "
            "message and after /forget: access and their own limits."
        },
    )

    user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    access: Mapped[str | None] = mapped_column(
        comment="allowed, pending (waiting for approval), refused, blocked; NULL: ACCESS_MODE decides"
    )
    limit_replies_per_minute: Mapped[int | None] = mapped_column(
        Integer, comment="this user's own LIMIT_REPLIES_PER_MINUTE (0: none); NULL: the setting"
    )
    limit_tokens_per_day: Mapped[int | None] = mapped_column(
        comment="this user's own LIMIT_TOKENS_PER_DAY (0: none); NULL: the setting"
    )
    updated_at: Mapped[datetime] = created_now()


class InviteCode(Base):
    __tablename__ = "invite_codes"
    __table_args__ = {
        "comment": "Invite codes (ACCESS_MODE=invite), kept as their SHA-256: a code redeemed lets its user in."
    }

    code_hash: Mapped[str] = mapped_column(
        primary_key=True, comment="hex SHA-256 of the code; the code is never stored"
    )
    uses_left: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime]
    created_by: Mapped[int | None] = mapped_column(comment="the operator's Telegram user id; NULL: the CLI")
    created_at: Mapped[datetime] = created_now()


class CodeAttempt(Base):
    __tablename__ = "code_attempts"
    __table_args__ = (
        Index("ix_code_attempts_user_id_at", "user_id", "at"),
        Index("ix_code_attempts_at", "at"),
        {"comment": "Wrong invite codes tried, by whom and when: 10 in an hour refuse a user's codes for an hour."},
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    user_id: Mapped[int]
    at: Mapped[datetime] = created_now()


class UsageDay(Base):
    __tablename__ = "usage_days"
    __table_args__ = {
        "comment": "Model tokens (prompt and reply) each user used per local day, for LIMIT_TOKENS_PER_DAY."
    }

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="the day in the user's zone")
    tokens: Mapped[int] = mapped_column(server_default="0")
    replies: Mapped[int] = mapped_column(Integer, server_default="0")


class AccessDecision(Base):
    __tablename__ = "access_decisions"
    __table_args__ = (
        CheckConstraint(one_of("action", ACCESS_ACTIONS), name="action"),
        Index("ix_access_decisions_user_id", "user_id"),
        {"comment": "Every access decision and limit change: who, what, when (the view access_log shows it)."},
    )

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(comment="the user decided about; NULL for an invite code created")
    action: Mapped[str]
    by_user_id: Mapped[int | None] = mapped_column(comment="the operator; NULL for a code redeemed or the CLI")
    detail: Mapped[str | None]
    created_at: Mapped[datetime] = created_now()
