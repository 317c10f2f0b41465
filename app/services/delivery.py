"""Sending what the outbox holds: one sender per chat at a time, retries decided by what is known.

A transport makes one attempt and says what is known afterwards (`SendOutcome`): *sent* is
recorded at once; *retry* is written back with its next attempt (Telegram's `retry_after`, or
the retry policy's backoff) and tried again in the sender if that is soon, else by the periodic
sweep; *give up* and *blocked* end the row (a block also ends the chat's check-ins). A process
has at most SEND_CONCURRENCY sends in flight, so a crash leaves at most that many whose fate
nobody knows: those are sent again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import structlog

from app.metrics import Metrics
from app.retry import backoff, retried
from app.services.drafts import DraftPreview, DraftTransport
from app.services.outbox import SendOutcome, Transport, TransportRefusedError
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.errors import DatabaseError
from storage.outbox import OutboxRepo, QueuedSend

log = structlog.get_logger(__name__)

CLAIM_LEASE = timedelta(seconds=20)  # longer than a transport's request timeout
GIVE_UP_AFTER = timedelta(hours=6)  # a reply later than this would make no sense any more
MAX_UNEXPECTED = 5  # attempts that failed in a way nobody foresaw, before giving up
INLINE_WAIT = 30.0  # a retry due sooner is waited for in the sender; later ones are left to the sweep
# Telegram takes about 30 messages a second from a bot in all, so more in flight buys nothing; and
# a crash can leave at most this many sends whose fate nobody knows.
SEND_CONCURRENCY = 8
_EMPTY = -1.0  # nothing claimable: the chat's queue is empty, in backoff, or being sent elsewhere


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
        on_refused: Callable[[TransportRefusedError], None] | None = None,
    ) -> None:
        """`on_refused`: called when the transport says nothing can be sent until an operator acts."""
        self.database = database
        self.transport = transport
        self.worker = worker
        self.metrics = metrics or Metrics()
        self.claim_lease = claim_lease
        self.sweep_concurrency = sweep_concurrency
        self.on_refused = on_refused
        self.trust = claim_lease.total_seconds() / 2  # how long a send queued claimed is sent on that claim
        self.drafts = DraftPreview(transport) if isinstance(transport, DraftTransport) else None
        self._in_flight = asyncio.Semaphore(SEND_CONCURRENCY)
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()  # chats queued for while their sender was running: look once more
        self._closing = False

    def typing(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        return self.transport.typing(chat_id)

    def kick(self, chat_id: int, *, expect: int | None = None) -> asyncio.Task[None]:
        """Make sure a sender drains this chat's queue (a running one looks once more before it stops)."""
        running = self._senders.get(chat_id)
        if running is not None and not running.done():
            self._again.add(chat_id)
            return running
        task = asyncio.create_task(self._drain(chat_id, structlog.contextvars.get_contextvars(), expect))
        self._senders[chat_id] = task
        task.add_done_callback(lambda done: self._forget(chat_id, done))
        return task

    async def flush(self, chat_id: int, *, expect: int | None = None, claimed: QueuedSend | None = None) -> None:
        """Send what is queued for the chat now, and return when it is sent or left for later.
        `claimed`: the chat's head, queued already claimed as this sender: it goes out first, without
        a claim of its own (no other sender can take it while the claim holds)."""
        if claimed is not None:
            try:
                wait = await self._send_head(chat_id, claimed, trusted_until=time.monotonic() + self.trust)
            except DatabaseError as exc:  # its claim runs out, and the sweep hands the send to a sender
                log.warning("send_left_for_the_sweep", send_id=claimed.id, error=str(exc))
                return
            if wait is None:
                expect = None if expect is None else expect - 1
            else:  # it failed: the sender looks properly, after the retry's wait if that is soon
                expect = None
                if 0 < wait <= INLINE_WAIT:
                    await asyncio.sleep(wait)
        with contextlib.suppress(Exception):  # a failed sender is logged; its rows wait for the sweep
            await asyncio.shield(self.kick(chat_id, expect=expect))

    async def sweep(self) -> int:
        """Hand due sends nobody is sending (retries, a dead sender's claims) to senders; how many chats."""
        room = self.sweep_concurrency - len(self._senders)
        if room <= 0 or self._closing:
            return 0
        started = 0
        for chat_id in await OutboxRepo(self.database).due_chats(room):
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
        with contextlib.suppress(DatabaseError):
            released = await OutboxRepo(self.database).release(self.worker)
            if released:
                log.info("sends_handed_back", sends=released)

    def _forget(self, chat_id: int, task: asyncio.Task[None]) -> None:
        if self._senders.get(chat_id) is task:
            del self._senders[chat_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("sender_failed", chat_id=chat_id, error=repr(task.exception()))

    async def _drain(self, chat_id: int, context: dict[str, object], expect: int | None) -> None:
        """Send the chat's queue head after head. With `expect`, stop after that many sends unless
        someone queued more meanwhile (they kick, which sets `_again`): no empty look at the end."""
        structlog.contextvars.bind_contextvars(**{**context, "chat_id": chat_id})
        while not self._closing:
            asked = chat_id in self._again
            self._again.discard(chat_id)
            if expect is not None and expect <= 0 and not asked:
                return
            wait = await self._send_head(chat_id)
            if wait is None:  # sent, or given up: the next head
                if expect is not None:
                    expect -= 1
                continue
            if wait == _EMPTY:
                if chat_id in self._again:
                    continue
                return
            if wait > INLINE_WAIT:
                return
            await asyncio.sleep(wait)

    async def _send_head(
        self, chat_id: int, claimed: QueuedSend | None = None, trusted_until: float = 0.0
    ) -> float | None:
        """Claim the chat's head (or take `claimed`), send it, record what happened. None: done with it;
        else the seconds until the chat's next attempt (`_EMPTY`: nothing to send now)."""
        async with self._in_flight:
            send = await self._take(chat_id, claimed, trusted_until)
            if send is None:
                return _EMPTY
            outcome = await self._attempt(send)
            if outcome.status == "sent":
                await self._record_sent(send, outcome.telegram_message_id)
                self.metrics.inc("aifriend_sends_total", outcome="sent")
                log.debug("message_sent", send_id=send.id, telegram_message_id=outcome.telegram_message_id)
                return None
        return await self._record_failure(send, outcome)

    async def _take(self, chat_id: int, claimed: QueuedSend | None, trusted_until: float) -> QueuedSend | None:
        """The send to make: `claimed` while its claim is surely alive; after a long wait for a slot, only
        if the database says the claim is still this worker's (so no other sender can have it); else
        the chat's head, if it can be claimed."""
        outbox = OutboxRepo(self.database)
        if claimed is None:
            return await outbox.claim_head(chat_id, self.worker, self.claim_lease)
        if time.monotonic() < trusted_until or await outbox.keep_claim(claimed.id, self.worker, self.claim_lease):
            return claimed
        return await outbox.claim_head(chat_id, self.worker, self.claim_lease)

    async def _attempt(self, send: QueuedSend) -> SendOutcome:
        try:
            return await self.transport.deliver(send)
        except TransportRefusedError as exc:  # kept for when an operator has fixed what was refused
            log.error("send_refused", error=str(exc))
            if self.on_refused is not None:
                self.on_refused(exc)
            return SendOutcome("retry", error=str(exc))
        except Exception as exc:  # a transport bug must not lose the message or stop the chat
            log.exception("send_attempt_crashed", send_id=send.id)
            error = f"{exc.__class__.__name__}: {exc}"
            return (
                SendOutcome("give_up", error=error)
                if send.attempts >= MAX_UNEXPECTED
                else SendOutcome("retry", error=error)
            )

    async def _record_sent(self, send: QueuedSend, telegram_message_id: int | None) -> None:
        """Tried for as long as the claim lasts: a delivery not written down by then may be sent again
        by another sender (at least once, never lost)."""
        try:
            await retried(
                lambda: OutboxRepo(self.database).sent(send.id, telegram_message_id),
                "delivery_not_recorded",
                retry_on=lambda e: isinstance(e, DatabaseError),
                patience=self.claim_lease.total_seconds(),
            )
        except DatabaseError as exc:
            log.error(
                "delivery_record_given_up",
                send_id=send.id,
                error=str(exc),
                detail="the message may be sent again once its claim runs out",
            )

    async def _record_failure(self, send: QueuedSend, outcome: SendOutcome) -> float | None:
        """Write down a failed attempt; the seconds until the chat's next try, or None to go on."""
        self.metrics.inc("aifriend_sends_total", outcome=outcome.status)
        outbox = OutboxRepo(self.database)
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
            await outbox.retry_later(send.id, timedelta(seconds=delay), outcome.error)
            return delay
        if outcome.status == "blocked":
            async with self.database.transaction() as tx:
                await OutboxRepo(tx).give_up_chat(send.chat_id, outcome.error or "the user blocked the bot")
                await ConversationRepo(tx).deactivate(send.chat_id)
        else:
            await outbox.give_up(send.id, outcome.error)
        log.warning(
            "send_given_up",
            send_id=send.id,
            attempts=send.attempts,
            error=outcome.error,
            blocked=outcome.status == "blocked",
        )
        return None
