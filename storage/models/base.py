"""What every model shares: the naming convention of constraints, the type map, the allowed values."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    MetaData,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATES = ("icebreaker", "warming", "close", "repair")
TRIGGERS = ("start", "count", "negative", "crisis", "recovered", "reset", "cooldown")
ROLES = ("user", "assistant")
KINDS = ("text", "reply", "checkin", "greeting", "command", "fallback", "other", "voice", "followup", "reminder")
CHECKIN_STATUSES = ("claimed", "sent", "skipped", "failed", "released")
OUTBOX_METHODS = ("sendMessage", "editMessageText", "sendDocument")
OUTBOX_STATUSES = ("pending", "failed")
FOLLOWUP_KINDS = ("plan", "reminder")
FOLLOWUP_STATUSES = ("pending", "sent", "cancelled", "skipped")
VOICE_KINDS = ("voice", "video_note")
VOICE_STATUSES = ("waiting", "heard", "refused")
ACCESS = ("allowed", "pending", "refused", "blocked")
ACCESS_ACTIONS = ("invited", "allowed", "approved", "refused", "blocked", "limit_set")


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: DateTime(timezone=True), int: BigInteger, str: Text}


def created_now() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())
