"""The schema as SQLAlchemy models; migrations must build exactly this (a test checks). Nothing
reads or writes through them at run time: they are the schema's declaration, for alembic."""

from storage.models.access import AccessDecision, CodeAttempt, InviteCode, UsageDay, UserAccess
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
from storage.models.plans import Followup
from storage.models.voice import VoiceNote

__all__ = [
    "AccessDecision",
    "Base",
    "Checkin",
    "CodeAttempt",
    "Conversation",
    "DailySummary",
    "DeadLetter",
    "Followup",
    "InviteCode",
    "MemoryForget",
    "Message",
    "Outbox",
    "ProcessedUpdate",
    "RecallCommonWord",
    "SendSlot",
    "StateTransition",
    "UsageDay",
    "User",
    "UserAccess",
    "VoiceNote",
    "WebhookRegistration",
]
