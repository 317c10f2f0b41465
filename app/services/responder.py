"""Answering a chat: the worker holding its reply lease writes what it owes, round after round,
then hands the lease back.

Each round reads what the chat owes (after waiting out a burst: REPLY_DEBOUNCE), asks the gate
whether the chat may be answered now (`Holds`: access, limits, newcomers' pace), keeps the plans
and reminders it names (`Followups`), writes one reply to all of it, and stores that reply with
its outbox rows in one statement, only while this worker still holds the lease. No connection is
held while the model writes; the lease is renewed meanwhile, so no other worker takes the chat
over. Messages that arrived during a round are answered together in the next.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from app.metrics import Metrics
from app.services.background import Background
from app.services.followups import Followups
from app.services.holds import Holds
from app.services.memory import MemoryKeeper
from app.services.model_queue import Priority
from app.services.outbox import Outbox
from app.services.text import text_sends
from app.services.values import Reply, ReplyContext, ReplyRules, context_of, utcnow
from app.services.when_slow import WhenSlow
from app.services.writer import ReplyWriter
from storage.database import Database
from storage.errors import DatabaseError
from storage.leases import Idle, LeaseRepo
from storage.outbox import QueuedSend
from storage.replies import LeaseLost, ReplyRepo, ReplyWrite
from storage.reply_path import ReplyPathRepo

log = structlog.get_logger(__name__)

VOICE_WAIT = 30.0  # seconds a reply waits for a voice note sent before it to be transcribed
VOICE_POLL = 0.25  # how often it looks meanwhile


@dataclass(frozen=True, slots=True)
class Queued:
    released: bool  # the lease was handed back with the reply: nothing arrived since it was read
    queued_before: int  # the chat's sends waiting ahead of the reply's
    pieces: int  # the reply's own sends
    claimed: QueuedSend | None  # the first of them, queued claimed by the outbox's sender


class Responder:
    def __init__(
        self,
        *,
        database: Database,
        writer: ReplyWriter,
        memory: MemoryKeeper,
        holds: Holds,
        followups: Followups,
        rules: ReplyRules,
        metrics: Metrics,
        background: Background,
    ) -> None:
        self.database = database
        self.writer = writer
        self.holds = holds
        self.followups = followups
        self.memory = memory
        self.rules = rules
        self.metrics = metrics
        self.background = background

    async def respond(self, chat_id: int, outbox: Outbox, context: ReplyContext | None = None) -> list[Reply]:
        """Answer everything the chat is owed, then give up the lease; `context`: what the first
        round needs, when the caller read it already (storing the message)."""
        replies: list[Reply] = []
        period = self.rules.lease.total_seconds() / 3
        renewals = WhenSlow(period, lambda: self._keep_lease(chat_id, period))
        async with renewals:
            while True:
                context = await self._owed(chat_id, outbox, context)
                if context is None:  # the chat was forgotten meanwhile
                    return replies
                if not context.pending:
                    idle = await LeaseRepo(self.database).release_if_idle(
                        chat_id, self.rules.worker, context.conversation.user_messages
                    )
                    if idle is not Idle.MORE_OWED:
                        return replies
                    context = None
                    continue
                priority = await self.holds.check(context, outbox)
                if priority is None:  # held: told once, answered when the hold ends
                    return replies
                await self.followups.note_owed(context, outbox)
                answered = await self.answer(context, outbox, priority)
                if answered is None:  # another worker took the chat over; it answers
                    return replies
                reply, stored = answered
                replies.append(reply)
                if stored.released:  # handed back: nothing to renew while the reply is sent
                    await renewals.stop()
                # With nothing queued ahead, the sender knows how many sends to make, and stops after them.
                expect = stored.pieces if stored.queued_before == 0 else None
                await outbox.flush(chat_id, expect=expect, claimed=stored.claimed)
                if stored.released:
                    return replies
                context = None

    async def answer(
        self, context: ReplyContext, outbox: Outbox, priority: Priority = Priority.CONVERSATION
    ) -> tuple[Reply, Queued] | None:
        """Write the reply to what `context` owes, store it and queue it. None: another worker holds
        the chat now, and nothing was stored."""
        chat_id = context.conversation.chat_id
        async with outbox.typing(chat_id):
            written = await self.writer.write(context, outbox.drafts if self.rules.stream else None, priority)
        sends = text_sends(written.text)
        stored = await ReplyRepo(self.database).store_reply(
            ReplyWrite(
                chat_id=chat_id,
                worker=self.rules.worker,
                kind=written.kind,
                text=written.text,
                through_id=context.pending[-1].id,
                seen_user_messages=context.conversation.user_messages,
                lease_until=utcnow() + self.rules.lease,
                sends=tuple((send.method, send.payload) for send in sends),
                recall_note=written.note,
                tokens=written.tokens,
                default_tz=self.rules.default_tz,
                claim_as=outbox.worker,
                claim_lease=outbox.claim_lease,
            )
        )
        if isinstance(stored, LeaseLost):
            log.warning("reply_dropped", reason="another worker holds the chat's lease now")
            return None
        self.metrics.inc("aifriend_replies_total", kind=written.kind)
        self.metrics.observe("aifriend_reply_seconds", (utcnow() - context.pending[-1].created_at).total_seconds())
        log.info(
            "reply_written",
            kind=written.kind,
            stage=written.stage.value,
            crisis=written.crisis,
            chars=len(written.text),
        )
        if await self.memory.should_fold(context.recent):
            self.background.spawn(self.memory.fold_if_needed(chat_id))
        reply = Reply(stored.message_id, written.text, written.kind, written.stage, written.crisis, written.prompt)
        return reply, Queued(stored.released, stored.queued_before, len(sends), stored.claimed)

    async def _owed(self, chat_id: int, outbox: Outbox, context: ReplyContext | None) -> ReplyContext | None:
        """What the next round answers, once any burst it belongs to is over, and once a voice note
        sent before it is heard (at most VOICE_WAIT): "did you get that?" after a voice note is
        answered together with the note, not before it."""
        voice_deadline = asyncio.get_running_loop().time() + VOICE_WAIT
        while True:
            if context is not None:
                wait = _wait_before(context, voice_deadline)
                if wait <= 0:
                    return context
                async with outbox.typing(chat_id):
                    await asyncio.sleep(wait)
            state = await ReplyPathRepo(self.database).read(
                chat_id,
                default_tz=self.rules.default_tz,
                window=self.rules.history_window,
                recall=self.rules.recall,
                replies_limit=self.rules.access.replies_per_minute,
                tokens_limit=self.rules.access.tokens_per_day,
            )
            if state is None:  # the chat was forgotten meanwhile
                return None
            context = context_of(state, self.rules)

    async def _keep_lease(self, chat_id: int, period: float) -> None:
        """Renew the chat's reply lease every `period`; a missed renewal is tried again (the lease outlives two)."""
        while True:
            with contextlib.suppress(DatabaseError):
                await LeaseRepo(self.database).renew(chat_id, self.rules.worker, utcnow() + self.rules.lease)
            await asyncio.sleep(period)


def _wait_before(context: ReplyContext, voice_deadline: float) -> float:
    """Seconds to wait before answering `context` and reading the chat again: a burst may still
    grow (REPLY_DEBOUNCE), or a voice note sent before it is still being heard (then the transcript
    is among what is owed, or its note still unheard: one read sees both)."""
    if context.debounce > 0:
        return context.debounce
    if context.behind_voice and asyncio.get_running_loop().time() < voice_deadline:
        return VOICE_POLL
    return 0.0
