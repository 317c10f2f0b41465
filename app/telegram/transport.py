"""One attempt at a Bot API call for the outbox, and what is known after it.

Not done, safe to retry: a 429 (wait its `retry_after`), a 5xx with an answer, an answer
that is not the Bot API's (a proxy's HTML page), a connection that was never made. Unknown:
the connection died or timed out after the request left; Telegram may have the message, and
the Bot API has no idempotency key, so it is sent again (at least once). Done for good: a
400 (it cannot work however often it is tried) or a 403 (the user blocked the bot).
"""

from __future__ import annotations

import asyncio

import structlog
from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessageDraft
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup
from aiohttp import ClientConnectorError

from app.services.delivery import SendOutcome
from app.services.drafts import DraftOutcome
from app.services.when_slow import WhenSlow
from storage.outbox import QueuedSend

log = structlog.get_logger()

SEND_TIMEOUT = 10  # seconds; well inside the outbox claim, so no other sender starts meanwhile
TYPING_EVERY = 4.5  # Telegram shows "typing" for about five seconds per action
TYPING_AFTER = 0.3  # a reply faster than this needs no indicator (and saves a request)


class TelegramTransport:
    def __init__(self, bot: Bot, *, send_timeout: int = SEND_TIMEOUT) -> None:
        self.bot = bot
        self.send_timeout = send_timeout

    async def deliver(self, send: QueuedSend) -> SendOutcome:
        try:
            return SendOutcome("sent", telegram_message_id=await self._call(send))
        except TelegramRetryAfter as exc:
            return SendOutcome("retry", retry_after=float(exc.retry_after), error=f"429: {exc.message}")
        except TelegramForbiddenError as exc:
            return SendOutcome("blocked", error=f"403: {exc.message}")
        except TelegramBadRequest as exc:
            if "message is not modified" in exc.message:  # an edit made before a crash: it is there
                return SendOutcome("sent")
            return SendOutcome("give_up", error=f"400: {exc.message}")
        except (TelegramNotFound, TelegramEntityTooLarge, TelegramMigrateToChat) as exc:
            return SendOutcome("give_up", error=f"{exc.__class__.__name__}: {exc.message}")
        except TelegramNetworkError as exc:
            never_connected = isinstance(exc.__cause__, ClientConnectorError)
            return SendOutcome("retry", error=exc.message, unknown=not never_connected)
        except (TelegramServerError, TelegramUnauthorizedError) as exc:
            return SendOutcome("retry", error=f"{exc.__class__.__name__}: {exc.message}")
        except ClientDecodeError as exc:
            return SendOutcome("retry", error=f"not a Bot API answer: {str(exc)[:200]}")
        except TelegramAPIError as exc:
            return SendOutcome("retry", error=f"{exc.__class__.__name__}: {exc.message}")

    async def _call(self, send: QueuedSend) -> int | None:
        payload, timeout = send.payload, self.send_timeout
        if send.method == "sendMessage":
            markup = payload.get("reply_markup")
            message = await self.bot.send_message(
                send.chat_id,
                str(payload["text"]),
                request_timeout=timeout,
                reply_markup=InlineKeyboardMarkup.model_validate(markup) if markup else None,
            )
            return message.message_id
        if send.method == "editMessageText":
            await self.bot.edit_message_text(
                str(payload["text"]),
                chat_id=send.chat_id,
                message_id=int(payload["message_id"]),
                request_timeout=timeout,
            )
            return None
        if send.method == "sendDocument":
            document = BufferedInputFile(str(payload["content"]).encode("utf-8"), filename=str(payload["filename"]))
            message = await self.bot.send_document(
                send.chat_id, document, caption=payload.get("caption"), request_timeout=timeout
            )
            return message.message_id
        raise ValueError(f"the outbox holds an unknown method {send.method!r}")

    async def draft(self, chat_id: int, draft_id: int, text: str) -> DraftOutcome:
        """`sendMessageDraft`: the reply so far, as an ephemeral preview."""
        try:
            await self.bot(
                SendMessageDraft(chat_id=chat_id, draft_id=draft_id, text=text), request_timeout=self.send_timeout
            )
        except TelegramRetryAfter as exc:
            return DraftOutcome("retry", retry_after=float(exc.retry_after), error=exc.message)
        except TelegramNotFound as exc:  # an older or self-hosted Bot API server
            return DraftOutcome("unsupported", error=f"404: {exc.message}")
        except TelegramBadRequest as exc:
            if "method" in exc.message.lower() and "not found" in exc.message.lower():
                return DraftOutcome("unsupported", error=f"400: {exc.message}")
            return DraftOutcome("failed", error=f"400: {exc.message}")
        except (TelegramAPIError, ClientDecodeError) as exc:
            return DraftOutcome("failed", error=f"{exc.__class__.__name__}: {exc}")
        return DraftOutcome("shown")

    def typing(self, chat_id: int) -> WhenSlow:
        """Show "typing" while the block runs, from TYPING_AFTER on (most replies finish sooner)."""
        return WhenSlow(TYPING_AFTER, lambda: self._keep_typing(chat_id))

    async def _keep_typing(self, chat_id: int) -> None:
        while True:
            try:
                await self.bot.send_chat_action(chat_id, ChatAction.TYPING, request_timeout=self.send_timeout)
            except TelegramAPIError as exc:  # typing is a courtesy; never fail a reply over it
                log.debug("typing_failed", error=str(exc))
            await asyncio.sleep(TYPING_EVERY)
