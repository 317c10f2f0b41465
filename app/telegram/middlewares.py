"""Outer middlewares: log context per update, and one unit of work per update that is not plain text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from app.services.commands import CommandService
from app.services.outbox import Outbox
from app.services.text import clean_text
from app.telegram.handlers.common import user_info

log = structlog.get_logger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def chat_of(update: Update) -> int | None:
    event = update.event
    chat = getattr(event, "chat", None) or getattr(getattr(event, "message", None), "chat", None)
    return chat.id if chat is not None else None


def is_plain_text(update: Update) -> bool:
    """User text that the conversation stores together with its update id (the hot path)."""
    message = update.message
    return bool(
        message
        and message.chat.type == "private"
        and message.text
        and not message.text.startswith("/")
        and clean_text(message.text)
    )


class LogContextMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(update_id=event.update_id, chat_id=chat_of(event))
        return await handler(event, data)


class UnitMiddleware(BaseMiddleware):
    """Everything but plain text runs in one transaction with its update id: a command's effect and
    its queued answer are kept together or not at all, and a redelivered update is skipped."""

    def __init__(self, commands: CommandService, outbox: Outbox) -> None:
        self.commands = commands
        self.outbox = outbox

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        if is_plain_text(event):
            return await handler(event, data)
        chat_id = chat_of(event)
        if chat_id is None:
            log.info("update_without_chat_ignored", event_type=event.event_type)
            return None
        user = user_info(getattr(event.event, "from_user", None), chat_id)
        async with self.commands.handling(chat_id, user, update_id=event.update_id) as unit:
            if unit is None:
                return None
            result = await handler(event, {**data, "unit": unit})
        for queued in unit.queued:
            self.outbox.kick(queued)
        for after in unit.then:
            after()
        return result
