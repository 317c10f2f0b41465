"""The schema as SQLAlchemy models; migrations must build exactly this (a test checks). Nothing
reads or writes through them at run time: they are the schema's declaration, for alembic."""

from storage.models.base import Base
from storage.models.chats import (
    Conversation,
    DailySummary,
    MemoryForget,
    Message,
    ProcessedUpdate,
    RecallCommonWord,
    StateTransition,
    User,
)
from storage.models.delivery import Checkin, DeadLetter, Outbox, SendSlot, WebhookRegistration

__all__ = [
    "Base",
    "Checkin",
    "Conversation",
    "DailySummary",
    "DeadLetter",
    "MemoryForget",
    "Message",
    "Outbox",
    "ProcessedUpdate",
    "RecallCommonWord",
    "SendSlot",
    "StateTransition",
    "User",
    "WebhookRegistration",
]
