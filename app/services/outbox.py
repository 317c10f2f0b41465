"""What the services need of the way out: queue rows are written in their own transactions, then
`flush` (wait) or `kick` (don't) hands them to a sender. `DeliveryQueue` is the one implementation."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from app.services.drafts import DraftPreview
from storage.outbox import ClaimAs, QueuedSend


class Outbox(Protocol):
    drafts: DraftPreview | None  # the reply as it is written, where the transport can show it

    @property
    def claim_as(self) -> ClaimAs | None:
        """Who claims this outbox's sends: a send may be queued already claimed as them."""

    def kick(self, chat_id: int) -> asyncio.Task[None]:
        """Start sending what is queued for the chat, without waiting."""

    async def flush(self, chat_id: int, *, expect: int | None = None, claimed: QueuedSend | None = None) -> None:
        """Send what is queued for the chat; returns when it is sent or left for a retry.

        `expect`: the caller knows the queue holds exactly this many sends (it just queued them
        with nothing ahead), so no look for more is needed after them. `claimed`: the chat's head,
        queued already claimed as `claim_as`: sent without claiming it again."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        """Show that a reply is being written, for as long as the block runs."""
