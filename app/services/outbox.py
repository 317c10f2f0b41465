"""The way out, as the services see it: rows are queued in the outbox by the statement that decides
them, then a sender delivers them through a transport (Telegram, the terminal, a test)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from app.services.drafts import DraftPreview
from storage.outbox import QueuedSend

Status = Literal["sent", "retry", "give_up", "blocked"]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What is known after one attempt: *sent*; *retry* (nothing happened, or nobody can know:
    `unknown`); *give up* (sending again cannot help); *blocked* (the user blocked the bot)."""

    status: Status
    telegram_message_id: int | None = None
    retry_after: float | None = None  # from the server (429); None: the queue backs off by attempts
    error: str = ""
    unknown: bool = False  # the request may have reached Telegram: a resend may duplicate it


class TransportRefusedError(Exception):
    """The transport cannot work at all until an operator acts (Telegram refused the bot's token):
    nothing is sent, and the process should stop saying what to change."""


class Transport(Protocol):
    async def deliver(self, send: QueuedSend) -> SendOutcome:
        """One attempt; never raises for what the other side answered."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        """Show that a reply is being written, for as long as the block runs."""


class Outbox(Protocol):
    drafts: DraftPreview | None  # the reply as it is written, where the transport can show it
    worker: str  # the sender's name in claims: a reply's first send may be queued claimed by it
    claim_lease: timedelta

    def kick(self, chat_id: int) -> asyncio.Task[None]:
        """Start sending what is queued for the chat, without waiting."""

    async def flush(self, chat_id: int, *, expect: int | None = None, claimed: QueuedSend | None = None) -> None:
        """Send what is queued for the chat; returns when it is sent or left for a retry. `expect`:
        the caller just queued exactly this many sends with nothing ahead of them, so no look for
        more is needed after them. `claimed`: the first of them, queued claimed as `worker`."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        """Show that a reply is being written, for as long as the block runs."""
