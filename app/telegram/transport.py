"""One attempt at a Bot API call for the outbox, and what is known after it (`app.telegram.errors`)."""

from __future__ import annotations

import asyncio

import structlog
from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import ClientDecodeError, TelegramAPIError
from aiogram.methods import SendMessageDraft
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup

from app.services.drafts import DraftOutcome
from app.services.outbox import SendOutcome
from app.services.when_slow import WhenSlow
from app.telegram.errors import draft_outcome, send_outcome
from storage.outbox import QueuedSend

log = structlog.get_logger(__name__)

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
        except (TelegramAPIError, ClientDecodeError) as exc:
            return send_outcome(exc)

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
        except (TelegramAPIError, ClientDecodeError) as exc:
            return draft_outcome(exc)
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
