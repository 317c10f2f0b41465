"""Outer middlewares: log context per update, and each update handled once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from app.services.conversation import ConversationService

log = structlog.get_logger()
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def chat_of(update: Update) -> int | None:
    event = update.event
    chat = getattr(event, "chat", None) or getattr(getattr(event, "message", None), "chat", None)
    return chat.id if chat is not None else None


def is_plain_text(update: Update) -> bool:
    """Plain user text is recorded together with the message it carries (same transaction)."""
    message = update.message
    return bool(message and message.chat.type == "private" and message.text and not message.text.startswith("/"))


class LogContextMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(update_id=event.update_id, chat_id=chat_of(event))
        return await handler(event, data)


class OnceMiddleware(BaseMiddleware):
    """Skip an update seen before (a redelivery after a crash or a webhook retry)."""

    def __init__(self, conversation: ConversationService) -> None:
        self.conversation = conversation

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        if not is_plain_text(event) and not await self.conversation.record_update(event.update_id, chat_of(event)):
            log.info("update_duplicate_skipped")
            return None
        return await handler(event, data)
