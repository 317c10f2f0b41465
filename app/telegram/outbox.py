"""The Telegram side of `Outbox`: split, honour flood limits, show typing, notice blocks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramRetryAfter

from app.services.outbox import ChatBlockedError
from app.telegram.split import split_message

log = structlog.get_logger()

TYPING_EVERY = 4.5  # Telegram shows "typing" for about five seconds per action
TYPING_AFTER = 0.3  # a reply faster than this needs no indicator (and saves a request)
MAX_RETRIES = 5


class TelegramOutbox:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, chat_id: int, text: str) -> int | None:
        message_id = None
        for piece in split_message(text):
            message_id = await self._send_piece(chat_id, piece)
        return message_id

    async def _send_piece(self, chat_id: int, text: str) -> int:
        for attempt in range(1, MAX_RETRIES + 1):
            try:
                sent = await self.bot.send_message(chat_id, text)
                return sent.message_id
            except TelegramRetryAfter as exc:
                if attempt == MAX_RETRIES:
                    raise
                log.warning("telegram_flood_wait", retry_after=exc.retry_after, attempt=attempt)
                await asyncio.sleep(exc.retry_after)
            except TelegramForbiddenError as exc:
                raise ChatBlockedError(chat_id) from exc
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        task = asyncio.create_task(self._keep_typing(chat_id))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_typing(self, chat_id: int) -> None:
        await asyncio.sleep(TYPING_AFTER)
        while True:
            try:
                await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramAPIError as exc:  # typing is a courtesy; never fail a reply over it
                log.debug("typing_failed", error=str(exc))
            await asyncio.sleep(TYPING_EVERY)
