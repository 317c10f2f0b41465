"""Where replies go: Telegram, the terminal, a test. The service only knows this protocol."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class ChatBlockedError(Exception):
    """The user blocked the bot (Telegram 403): stop writing to this chat."""


class Outbox(Protocol):
    async def send(self, chat_id: int, text: str) -> int | None:
        """Deliver `text`; return the Telegram message id if there is one."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        """Show that a reply is being written, for as long as the block runs."""
