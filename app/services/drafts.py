"""A reply shown while it is written (`sendMessageDraft`), inside Telegram's limits.

Drafts are a courtesy: they are throttled per chat (at most one every DRAFT_EVERY seconds, and
only when enough new text arrived), share a budget across the process (at most PROCESS_BUDGET in
any one second: a moving window, so no burst goes past it), never wait for one another, and
never delay or replace the final message, which goes through the outbox as always. A 429
pauses that chat's drafts for its `retry_after`; a Bot API server that does not know the method
turns drafts off for the process (said once in the log), leaving "typing".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import structlog
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

log = structlog.get_logger(__name__)

DRAFT_EVERY = 0.5  # seconds between two drafts of one chat
MIN_NEW_CHARS = 12  # ...and at least this much new text since the last one
PROCESS_BUDGET = 20  # drafts in any second across all chats of the process (Telegram allows ~30 messages/s)
MAX_DRAFT = 4096
FINISH_WAIT = 1.0  # how long the final message waits for a draft call still in flight


@dataclass(frozen=True, slots=True)
class DraftOutcome:
    status: Literal["shown", "retry", "unsupported", "failed"]
    retry_after: float = 0.0
    error: str = ""


@runtime_checkable
class DraftTransport(Protocol):
    async def draft(self, chat_id: int, draft_id: int, text: str) -> DraftOutcome: ...


@dataclass
class _Chat:
    shown_at: float = 0.0
    shown_chars: int = 0
    paused_until: float = 0.0
    in_flight: asyncio.Task[None] | None = None


@dataclass
class DraftPreview:
    """Decides which drafts to send; `show` never blocks the writer."""

    transport: DraftTransport
    every: float = DRAFT_EVERY
    min_new_chars: int = MIN_NEW_CHARS
    budget: int = PROCESS_BUDGET
    enabled: bool = True
    sent: int = 0
    skipped: int = 0
    _chats: dict[int, _Chat] = field(default_factory=dict)
    _window: MovingWindowRateLimiter = field(default_factory=lambda: MovingWindowRateLimiter(MemoryStorage()))

    def show(self, chat_id: int, draft_id: int, text: str) -> None:
        """Offer the text written so far; it is sent if this chat's throttle and the budget allow."""
        if not self.enabled or not text.strip():
            return
        now = time.monotonic()
        chat = self._chats.setdefault(chat_id, _Chat())
        busy = chat.in_flight is not None and not chat.in_flight.done()
        if (
            busy
            or now < chat.paused_until
            or now - chat.shown_at < self.every
            or (chat.shown_chars and len(text) - chat.shown_chars < self.min_new_chars)
            or not self._window.hit(RateLimitItemPerSecond(self.budget), "drafts")
        ):
            self.skipped += 1
            return
        chat.shown_at, chat.shown_chars = now, len(text)
        chat.in_flight = asyncio.create_task(self._send(chat_id, chat, draft_id, _visible(text)))

    async def finish(self, chat_id: int) -> None:
        """The reply is written: let a draft call in flight land before the final message, then forget the chat."""
        chat = self._chats.pop(chat_id, None)
        if chat is None or chat.in_flight is None or chat.in_flight.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(chat.in_flight), FINISH_WAIT)
        except (TimeoutError, Exception):
            chat.in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await chat.in_flight

    async def _send(self, chat_id: int, chat: _Chat, draft_id: int, text: str) -> None:
        try:
            outcome = await self.transport.draft(chat_id, draft_id, text)
        except Exception as exc:  # a courtesy must never break the reply
            outcome = DraftOutcome("failed", error=f"{exc.__class__.__name__}: {exc}")
        if outcome.status == "shown":
            self.sent += 1
        elif outcome.status == "retry":
            chat.paused_until = time.monotonic() + outcome.retry_after
            log.info("drafts_paused", chat_id=chat_id, seconds=outcome.retry_after)
        elif outcome.status == "unsupported":
            if self.enabled:
                log.warning(
                    "drafts_unsupported",
                    error=outcome.error,
                    detail="this Bot API server has no sendMessageDraft; replies show 'typing' only",
                )
            self.enabled = False
        else:
            log.debug("draft_failed", chat_id=chat_id, error=outcome.error)


def _visible(text: str) -> str:
    """A draft holds at most 4096 characters: show the part being written."""
    if len(text) <= MAX_DRAFT:
        return text
    return text[(len(text) - 1) // MAX_DRAFT * MAX_DRAFT :]
