"""Sending what the outbox holds: one sender per chat at a time, retries decided by what is known.

A transport (Telegram, the terminal, a test) makes one attempt and says what is known
afterwards: *sent* (record it at once), *retry* (nothing happened: a 429, a 5xx with an
answer, a refused connection; or nobody can know, the connection died after the request
left: at-least-once, so it is sent again), *give up* (a 400: sending again cannot help) or
*blocked* (403: the user blocked the bot). Delivery is recorded by the next statement that
records deliveries (`DeliveryLedger`), so the window in which a crash leaves a send's fate
unknown is at most two round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.metrics import Metrics
from app.services.drafts import DraftPreview, DraftTransport
from app.services.ledger import DeliveryLedger
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.outbox import ClaimAs, OutboxRepo, QueuedSend, SenderRepo

log = structlog.get_logger()

Status = Literal["sent", "retry", "give_up", "blocked"]
CLAIM_LEASE = timedelta(seconds=20)  # longer than a transport's request timeout
GIVE_UP_AFTER = timedelta(hours=6)  # a reply later than this would make no sense any more
MAX_UNEXPECTED = 5  # attempts that failed in a way nobody foresaw, before giving up
INLINE_WAIT = 30.0  # a retry due sooner is waited for in the sender; later ones are left to the sweep
BACKOFF_CAP = 30.0
# Sends in flight per process. Telegram takes about 30 messages a second from a bot in all, so
# more buys nothing; and a crash can leave at most this many sends whose fate nobody knows.
SEND_CONCURRENCY = 8
_EMPTY = -1.0  # nothing claimable: the chat's queue is empty, in backoff, or being sent elsewhere


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: Status
    telegram_message_id: int | None = None
    retry_after: float | None = None  # from the server (429); None: the queue backs off by attempts
    error: str = ""
    unknown: bool = False  # the request may have reached Telegram: a resend may duplicate it


class Transport(Protocol):
    async def deliver(self, send: QueuedSend) -> SendOutcome:
        """One attempt; never raises for what the other side answered."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        """Show that a reply is being written, for as long as the block runs."""


def backoff(attempts: int) -> float:
    """0.5 s, 1 s, 2 s ... up to 30 s, with jitter so senders that failed together spread out."""
    delay: float = min(BACKOFF_CAP, 0.5 * 2.0 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


class DeliveryQueue:
    """The `Outbox` the services write to: sends queued rows, per chat in order, through a transport."""

    def __init__(
        self,
        database: Database,
        transport: Transport,
        *,
        worker: str,
        metrics: Metrics | None = None,
        claim_lease: timedelta = CLAIM_LEASE,
        sweep_concurrency: int = 64,
    ) -> None:
        self.database = database
        self.transport = transport
        self.worker = worker
        self.metrics = metrics or Metrics()
        self.claim_lease = claim_lease
        self.sweep_concurrency = sweep_concurrency
        self.drafts = DraftPreview(transport) if isinstance(transport, DraftTransport) else None
        self._in_flight = asyncio.Semaphore(SEND_CONCURRENCY)
        self.ledger = DeliveryLedger(database)
        self._senders: dict[int, asyncio.Task[None]] = {}
        # A chat's head, queued claimed, and until when it may be sent on that claim: its sender takes it as is.
        self._claimed: dict[int, tuple[QueuedSend, float]] = {}
        self._again: set[int] = set()
        self._closing = False

    @property
    def claim_as(self) -> ClaimAs:
        return ClaimAs(self.worker, self.claim_lease)

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        return self.transport.typing(chat_id)

    def kick(self, chat_id: int, *, expect: int | None = None) -> asyncio.Task[None]:
        """Make sure a sender drains this chat's queue (a running one looks once more before it stops)."""
        running = self._senders.get(chat_id)
        if running is not None and not running.done():
            self._again.add(chat_id)
            return running
        context = structlog.contextvars.get_contextvars()
        task = asyncio.create_task(self._drain(chat_id, context, expect))
        self._senders[chat_id] = task
        task.add_done_callback(lambda done: self._forget(chat_id, done))
        return task

    def _forget(self, chat_id: int, task: asyncio.Task[None]) -> None:
        if self._senders.get(chat_id) is task:
            del self._senders[chat_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("sender_failed", chat_id=chat_id, error=repr(task.exception()))

    async def flush(self, chat_id: int, *, expect: int | None = None, claimed: QueuedSend | None = None) -> None:
        """Send what is queued for the chat now, and return when it is sent or left for later."""
        if claimed is not None:  # a running sender of the chat takes it on its next turn (kick says so)
            self._claimed[chat_id] = (claimed, time.monotonic() + self.claim_lease.total_seconds() / 2)
        with contextlib.suppress(Exception):
            await asyncio.shield(self.kick(chat_id, expect=expect))

    async def sweep(self) -> int:
        """Hand due sends nobody is sending (retries, a dead sender's claims) to senders; how many chats."""
        room = self.sweep_concurrency - len(self._senders)
        if room <= 0 or self._closing:
            return 0
        async with self._unit() as repo:
            chats = await repo.due_chats(room)
        started = 0
        for chat_id in chats:
            if chat_id not in self._senders:
                self.kick(chat_id)
                started += 1
        return started

    async def close(self, grace: float) -> None:
        """Stop taking new sends, finish what is in flight within `grace`, hand back the rest."""
        self._closing = True
        pending = [task for task in self._senders.values() if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self._unit() as repo:
                released = await repo.release(self.worker)
            if released:
                log.info("sends_handed_back", sends=released)

    @contextlib.asynccontextmanager
    async def _unit(self) -> AsyncIterator[OutboxRepo]:
        async with self.database.sessions() as session, session.begin():
            yield OutboxRepo(session)

    async def _drain(self, chat_id: int, context: dict[str, object], expect: int | None = None) -> None:
        """Send the chat's queue head after head. With `expect`, stop after that many sends unless
        someone queued more meanwhile (they kick, which sets `_again`): no empty look at the end.

        `_again` is taken before each look, so a kick during a look (the claim that finds the queue
        empty may have been sent before a reply was queued) always brings another; and a reply
        handed over claimed (`_claimed`) is never left behind: its claim would hold it for 20 s."""
        structlog.contextvars.bind_contextvars(**{**context, "chat_id": chat_id})
        while not self._closing:
            asked = chat_id in self._again or chat_id in self._claimed
            self._again.discard(chat_id)
            if expect is not None and expect <= 0 and not asked:
                return
            delay = await self._send_head(chat_id)
            if expect is not None and delay is None:
                expect -= 1
            if delay is _EMPTY:
                if chat_id in self._again or chat_id in self._claimed:
                    continue
                return
            if delay is None:
                continue
            if delay > INLINE_WAIT:
                return
            await asyncio.sleep(delay)

    async def _send_head(self, chat_id: int) -> float | None:
        """Claim the chat's head (or take the one queued claimed for it), send it, record what
        happened: a delivery with the others that arrive meanwhile (`DeliveryLedger`)."""
        claimed, usable_until = self._claimed.pop(chat_id, (None, 0.0))  # taken once, whatever happens next
        async with self._in_flight:
            # A claim that may have run out meanwhile (a long wait for a slot) is not trusted: the
            # database decides again, so no other sender can have it at the same time.
            send = claimed if claimed is not None and time.monotonic() < usable_until else await self._claim(chat_id)
            if send is None:
                return _EMPTY
            outcome = await self._attempt(send)
            if outcome.status == "sent":
                try:
                    await self.ledger.record(send.id, outcome.telegram_message_id)
                except Exception:
                    await self._record_sent(send, outcome.telegram_message_id)  # on its own
                self.metrics.inc("aifriend_sends_total", outcome="sent")
                log.debug("message_sent", send_id=send.id, telegram_message_id=outcome.telegram_message_id)
                return None
        return await self._record(send, outcome)

    async def _claim(self, chat_id: int) -> QueuedSend | None:
        async with self.database.raw() as connection:  # one statement, committing by itself
            return await SenderRepo(connection).claim_head(chat_id, self.worker, self.claim_lease)

    async def _attempt(self, send: QueuedSend) -> SendOutcome:
        try:
            return await self.transport.deliver(send)
        except Exception as exc:  # a transport bug must not lose the message or stop the chat
            log.exception("send_attempt_crashed", send_id=send.id)
            if send.attempts >= MAX_UNEXPECTED:
                return SendOutcome("give_up", error=f"{exc.__class__.__name__}: {exc}")
            return SendOutcome("retry", error=f"{exc.__class__.__name__}: {exc}")

    async def _record(self, send: QueuedSend, outcome: SendOutcome) -> float | None:
        """Write down a failed attempt; the seconds until the next try of this chat, or None to go on."""
        self.metrics.inc("aifriend_sends_total", outcome=outcome.status)
        if outcome.status == "retry" and datetime.now(UTC) - send.created_at < GIVE_UP_AFTER:
            delay = outcome.retry_after if outcome.retry_after is not None else backoff(send.attempts)
            log.warning(
                "send_retry",
                send_id=send.id,
                attempt=send.attempts,
                delay=round(delay, 2),
                error=outcome.error,
                fate_unknown=outcome.unknown,
            )
            async with self._unit() as repo:
                await repo.retry_later(send.id, timedelta(seconds=delay), outcome.error)
            return delay
        async with self._unit() as repo:
            if outcome.status == "blocked":
                await repo.give_up_chat(send.chat_id, outcome.error or "the user blocked the bot")
                assert isinstance(repo.session, AsyncSession)
                await ConversationRepo(repo.session).update(
                    send.chat_id, active=False, next_checkin_at=None, reply_lease_until=None, reply_lease_owner=None
                )
            else:
                await repo.give_up(send.id, outcome.error)
        log.warning(
            "send_given_up",
            send_id=send.id,
            attempts=send.attempts,
            error=outcome.error,
            blocked=outcome.status == "blocked",
        )
        return None

    async def _record_sent(self, send: QueuedSend, telegram_message_id: int | None) -> None:
        """Keep trying: a delivery not written down would be sent again once the claim runs out."""
        pause = 0.2
        while True:
            try:
                async with self._unit() as repo:
                    await repo.sent(send.id, telegram_message_id)
                return
            except Exception as exc:
                log.warning("delivery_not_recorded", send_id=send.id, error=exc.__class__.__name__)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
