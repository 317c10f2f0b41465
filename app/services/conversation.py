"""The conversation service: store → score → advance the FSM → prompt → generate → store.

Each step opens its own short unit of work; no connection is held across a model call.
Per-chat order comes from the database: the conversation row is locked while a message
is stored, and a short renewable lease names the one worker writing the chat's replies.
Messages that arrive while a reply is being written are stored and answered together in
the next round, which is also how bursts are merged. A reply is queued in the outbox in the
transaction that stores it, and only while this worker still holds the chat's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.metrics import Metrics
from app.persona import Persona
from app.prompt import Memory, Recalled, Turn, build_prompt, system_message
from app.services.batching import NaturalBatch
from app.services.memory import MemoryKeeper
from app.services.outbox import Outbox
from app.services.records import (
    Received,
    Reply,
    ReplyContext,
    fsm_columns,
    snapshot_of,
    transition_records,
    utcnow,
)
from app.services.replies import PROMPT_KINDS, ReplyWriter, Written
from app.services.text import clean_text, text_sends
from app.services.when_slow import WhenSlow
from fsm import MessageEvent, RelationshipMachine, SilenceEvent, Stage, Transition
from llm.errors import GenerationFailedError
from llm.sentiment import SentimentScorer, detect_crisis
from llm.types import ChatModel
from scheduler.timing import CheckinPolicy, next_checkin
from storage.conversations import ConversationRepo, UserInfo
from storage.database import Database
from storage.dto import ConversationRow, MessageRow, RecalledRow
from storage.memory import MemoryRepo
from storage.messages import MessageRepo
from storage.reply_path import ChatState, MessageWrite, ReadWanted, ReplyPathRepo, StoredReply

log = structlog.get_logger()

HISTORY_WINDOW = 200  # messages read for a prompt; the token budget decides how many are used
OPTIMISTIC_ATTEMPTS = 5  # reads and guarded writes of one message before taking the row lock instead
RECALL_CANDIDATES = 8  # older lines a reply's read fetches by full-text rank; the budget decides how many are used
HEAL_CONCURRENCY = 32  # chats answered at once after a crash; the model server queues the rest


_NOT_YET_STORED = 2**62  # the id a message has in a reply written ahead of its store (never a real id)


def _call_off(ahead: asyncio.Task[Any] | None) -> None:
    """A reply written ahead for a message that was not stored: its requests never left."""
    if ahead is not None:
        ahead.cancel()


class ConversationService:
    def __init__(
        self,
        *,
        database: Database,
        model: ChatModel,
        scorer: SentimentScorer,
        persona: Persona,
        default_tz: str = "UTC",
        reply_debounce: timedelta = timedelta(0),
        reply_lease: timedelta = timedelta(seconds=15),
        checkins: CheckinPolicy | None = None,
        metrics: Metrics | None = None,
        worker: str = "local",
        stream_replies: bool = True,
        recall: bool = True,
    ) -> None:
        self.database = database
        self.model = model
        self.scorer = scorer
        self.persona = persona
        self.machine = RelationshipMachine(persona.fsm_thresholds)
        self.default_tz = default_tz
        self.reply_debounce = reply_debounce
        self.reply_lease = reply_lease
        self.checkins = checkins or CheckinPolicy(default_tz=default_tz)
        self.metrics = metrics or Metrics()
        self.memory = MemoryKeeper(database=database, model=model, persona=persona)
        self.writer = ReplyWriter(model=model, persona=persona, metrics=self.metrics)
        self.worker = worker
        self.stream_replies = stream_replies  # show replies as they are written, where the outbox can
        self.recall = RECALL_CANDIDATES if recall else 0  # older lines fetched for each reply's prompt
        # Chats read at the same time (a batch of updates, replies under load) share one statement.
        self._reads: NaturalBatch[ReadWanted, ChatState | None] = NaturalBatch(self._read_many)
        self._background: set[asyncio.Task[Any]] = set()
        self._healing: set[int] = set()

    # ---- units of work -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _unit(self) -> Any:
        async with self.database.sessions() as session, session.begin():
            yield session

    def plan_checkin(self, last_activity: datetime, *, enabled: bool, unanswered: int = 0) -> datetime | None:
        return next_checkin(
            last_activity=last_activity,
            policy=self.checkins,
            unanswered=unanswered,
            enabled=enabled,
            active=True,
            spread=random.random(),
        )

    def zone(self, row: ConversationRow) -> ZoneInfo:
        return ZoneInfo(row.timezone or self.default_tz)

    # ---- incoming ------------------------------------------------------------------

    async def receive(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        *,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
        outbox: Outbox | None = None,
    ) -> Received:
        """Store and score one user message and move the FSM; decide who replies.

        With `outbox` (where the reply will go), a reply due at once is written ahead while the
        message is stored (`Received.ahead`); nothing of it leaves before the store commits."""
        text = clean_text(text) or "…"
        sentiment = await self.scorer.score(text)
        crisis = detect_crisis(text)
        received = await self._receive_known(
            chat_id,
            user,
            text,
            sentiment,
            crisis,
            telegram_message_id=telegram_message_id,
            update_id=update_id,
            outbox=outbox,
        )
        if received is None:  # a new chat, a changed name, or a chat too busy to store optimistically
            received = await self._receive_locked(
                chat_id, user, text, sentiment, crisis, telegram_message_id=telegram_message_id, update_id=update_id
            )
        return received

    async def _receive_known(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        sentiment: Any,
        crisis: bool,
        *,
        telegram_message_id: int | None,
        update_id: int | None,
        outbox: Outbox | None = None,
    ) -> Received | None:
        """The hot path: read everything in one statement, write everything in another.

        The write is guarded by what was read; if the conversation changed in between, it writes
        nothing and the read is repeated. None sends the caller to the locking path."""
        # With a debounce the reply re-reads its context once the burst is over: recall then.
        wanted = ReadWanted(chat_id, text, 0 if self.reply_debounce > timedelta(0) else self.recall)
        for _ in range(OPTIMISTIC_ATTEMPTS):
            state = await self._reads.submit(wanted)
            async with self.database.raw() as connection:
                repo = ReplyPathRepo(connection)
                if state is None:
                    return await self._receive_first(
                        repo,
                        chat_id,
                        user,
                        text,
                        sentiment,
                        crisis,
                        telegram_message_id=telegram_message_id,
                        update_id=update_id,
                    )
                row = state.conversation
                if user.username != row.username or user.first_name != row.first_name:
                    return None
                outcome = self.machine.advance(
                    snapshot_of(row), MessageEvent(sentiment.negative, sentiment.positive, crisis)
                )
                now = utcnow()
                responder = row.reply_lease_until is None or row.reply_lease_until < now
                lease_until = now + self.reply_lease if responder else row.reply_lease_until
                lease_owner = self.worker if responder else row.reply_lease_owner
                moved = replace(
                    row,
                    **fsm_columns(outcome.snapshot),
                    user_messages=row.user_messages + 1,
                    last_user_message_at=now,
                    reply_lease_until=lease_until,
                    reply_lease_owner=lease_owner,
                )

                answering: asyncio.Future[int] | None = None
                ahead: asyncio.Task[Written] | None = None
                if responder and outbox is not None and self.reply_debounce <= timedelta(0):
                    # The reply is due at once: its prompt and request are made while the message is
                    # stored (the store's round trip is otherwise idle time), and leave when it commits.
                    answering = asyncio.get_running_loop().create_future()
                    drafts = outbox.drafts if self.stream_replies else None
                    unstored = MessageRow(
                        _NOT_YET_STORED,
                        chat_id,
                        "user",
                        "text",
                        text,
                        now,
                        telegram_message_id,
                        None,
                        None,
                        sentiment.negative,
                        sentiment.positive,
                    )
                    ahead = self.writer.write_ahead(self._context_after(moved, state, unstored), drafts, answering)
                try:
                    stored = await repo.store_message(
                        row,
                        MessageWrite(
                            text,
                            telegram_message_id,
                            update_id,
                            sentiment.negative,
                            sentiment.positive,
                            fsm_columns(outcome.snapshot),
                            now,
                            self.plan_checkin(now, enabled=row.checkins_enabled),
                            lease_until,
                            lease_owner,
                        ),
                        transition_records(outcome.transitions),
                    )
                except asyncpg.UniqueViolationError:  # the same message, stored by a concurrent delivery
                    _call_off(ahead)
                    continue
                except BaseException:
                    _call_off(ahead)
                    raise
                if stored.duplicate or stored.message_id is None or stored.created_at is None:
                    _call_off(ahead)
                    if stored.duplicate:
                        return Received(None, duplicate=True)
                    continue
                if answering is not None and not answering.done():
                    answering.set_result(stored.message_id)
                    await asyncio.sleep(0)  # the model request goes out now; the bookkeeping below can wait
                self._after_receive(chat_id, row, outcome.transitions, now)
                message = MessageRow(
                    stored.message_id,
                    chat_id,
                    "user",
                    "text",
                    text,
                    stored.created_at,
                    telegram_message_id,
                    None,
                    None,
                    sentiment.negative,
                    sentiment.positive,
                )
                return Received(
                    stored.message_id,
                    outcome.snapshot.stage,
                    outcome.transitions,
                    responder,
                    context=self._context_after(moved, state, message) if responder else None,
                    ahead=ahead,
                )
        return None

    async def _receive_first(
        self,
        repo: ReplyPathRepo,
        chat_id: int,
        user: UserInfo,
        text: str,
        sentiment: Any,
        crisis: bool,
        *,
        telegram_message_id: int | None,
        update_id: int | None,
    ) -> Received | None:
        """A new chat, in one statement; None if it was created meanwhile (the locking path then)."""
        begin = RelationshipMachine.begin()
        outcome = self.machine.advance(begin.snapshot, MessageEvent(sentiment.negative, sentiment.positive, crisis))
        now = utcnow()
        try:
            stored = await repo.store_first_message(
                chat_id,
                user,
                MessageWrite(
                    text,
                    telegram_message_id,
                    update_id,
                    sentiment.negative,
                    sentiment.positive,
                    fsm_columns(outcome.snapshot),
                    now,
                    self.plan_checkin(now, enabled=True),  # check-ins start enabled
                    now + self.reply_lease,
                    self.worker,
                ),
                started=transition_records(begin.transitions),
                transitions=transition_records(outcome.transitions),
            )
        except asyncpg.UniqueViolationError:  # a concurrent first delivery won
            return None
        if stored.duplicate:
            return Received(None, duplicate=True)
        if stored.message_id is None:
            return None
        log.info("conversation_started")
        self._after_receive(chat_id, None, outcome.transitions, now)
        return Received(stored.message_id, outcome.snapshot.stage, outcome.transitions, responder=True)

    async def _receive_locked(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        sentiment: Any,
        crisis: bool,
        *,
        telegram_message_id: int | None,
        update_id: int | None,
    ) -> Received:
        """First contact or a changed name: under the conversation's row lock, in one transaction."""
        async with self._unit() as session:
            conversations, messages = ConversationRepo(session), MessageRepo(session)
            if update_id is not None and not await conversations.record_update(update_id, chat_id):
                return Received(None, duplicate=True)
            row = await self.open_in(session, chat_id, user)
            message_id = await messages.add(
                chat_id,
                role="user",
                kind="text",
                text=text,
                telegram_message_id=telegram_message_id,
                update_id=update_id,
                sentiment_negative=sentiment.negative,
                sentiment_positive=sentiment.positive,
            )
            if message_id is None:
                return Received(None, duplicate=True)
            outcome = self.machine.advance(
                snapshot_of(row), MessageEvent(sentiment.negative, sentiment.positive, crisis)
            )
            now = utcnow()
            responder = row.reply_lease_until is None or row.reply_lease_until < now
            await conversations.update(
                chat_id,
                **fsm_columns(outcome.snapshot),
                user_messages=row.user_messages + 1,
                last_user_message_at=now,
                checkins_unanswered=0,
                active=True,
                next_checkin_at=self.plan_checkin(now, enabled=row.checkins_enabled),
                reply_lease_until=now + self.reply_lease if responder else row.reply_lease_until,
                reply_lease_owner=self.worker if responder else row.reply_lease_owner,
            )
            await conversations.add_transitions(chat_id, transition_records(outcome.transitions), message_id)
        self._after_receive(chat_id, row, outcome.transitions, now)
        return Received(message_id, outcome.snapshot.stage, outcome.transitions, responder)

    def _after_receive(
        self, chat_id: int, row: ConversationRow | None, transitions: tuple[Transition, ...], now: datetime
    ) -> None:
        self.metrics.inc("aifriend_messages_received_total")
        for transition in transitions:
            self.metrics.inc("aifriend_transitions_total", trigger=transition.trigger.value)
            log.info(
                "fsm_transitioned",
                from_state=transition.from_stage,
                to_state=transition.to_stage,
                trigger=transition.trigger,
                user_messages=transition.messages,
                negative=transition.negative,
                positive=transition.positive,
            )
        if row is not None and row.last_user_message_at is not None:
            zone = self.zone(row)
            previous_day = row.last_user_message_at.astimezone(zone).date()
            if previous_day != now.astimezone(zone).date():
                self.spawn(self.memory.summarize_day(chat_id, previous_day, zone))

    def _context_after(self, row: ConversationRow, state: ChatState, message: MessageRow) -> ReplyContext:
        """The reply context once `message` is stored, from what was read before it."""
        return self._reply_context(
            row, [*state.pending, message], [*state.recent, message][-HISTORY_WINDOW:], state.days, state.recalled
        )

    def _reply_context(
        self,
        row: ConversationRow,
        pending: list[MessageRow],
        recent: list[MessageRow],
        days: list[Any],
        recalled: list[RecalledRow],
    ) -> ReplyContext:
        debounce = (pending[-1].created_at + self.reply_debounce - utcnow()).total_seconds() if pending else 0.0
        return ReplyContext(
            row,
            pending,
            recent,
            Memory(row.memory_summary, tuple((d.day, d.text) for d in days)),
            recalled=tuple(Recalled(r.id, r.text, r.created_at.date()) for r in recalled),
            debounce=debounce,
        )

    async def open_in(self, session: AsyncSession, chat_id: int, user: UserInfo) -> ConversationRow:
        """The locked conversation, created (with its `start` transition) on first contact."""
        conversations = ConversationRepo(session)
        row = await conversations.lock(chat_id)
        if row is not None:
            if user.username != row.username or user.first_name != row.first_name:
                await conversations.ensure(chat_id, user)
            return row
        if await conversations.ensure(chat_id, user):
            await conversations.add_transitions(chat_id, transition_records(RelationshipMachine.begin().transitions))
            log.info("conversation_started")
        row = await conversations.lock(chat_id)
        assert row is not None
        return row

    async def handle_text(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        outbox: Outbox,
        *,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
    ) -> list[Reply]:
        """The whole path for one message; replies only if this call became the responder."""
        received = await self.receive(
            chat_id,
            user,
            text,
            telegram_message_id=telegram_message_id,
            update_id=update_id,
            outbox=outbox,
        )
        if not received.responder:
            return []
        return await self.respond(chat_id, outbox, received.context, received.ahead)

    # ---- replying ------------------------------------------------------------------

    async def respond(
        self,
        chat_id: int,
        outbox: Outbox,
        context: ReplyContext | None = None,
        ahead: asyncio.Task[Written] | None = None,
    ) -> list[Reply]:
        """Answer everything the chat is owed, round after round, then give up the lease.

        `context`, when the caller read it already (storing the message), saves the first read;
        `ahead`, the first reply already being written for it."""
        replies: list[Reply] = []
        period = self.reply_lease.total_seconds() / 3
        lease = WhenSlow(period, lambda: self._keep_lease(chat_id, period))
        async with lease:
            while True:
                if context is None or context.debounce > 0:
                    if context is not None:  # a burst may still grow: wait, then read what it became
                        async with outbox.typing(chat_id):
                            await asyncio.sleep(context.debounce)
                    context = await self._context(chat_id)
                    if context is None:
                        return replies
                    if context.debounce > 0:
                        continue
                if not context.pending:
                    if await self._release_if_idle(chat_id):
                        return replies
                    context = None
                    continue
                async with outbox.typing(chat_id):
                    written = await self._write_reply(context, outbox, ahead)
                ahead = None
                if written is None:  # another worker took the chat over; it answers
                    return replies
                reply, stored, pieces = written
                replies.append(reply)
                if await self.memory.should_fold(context.recent):
                    self.spawn(self.memory.fold_if_needed(chat_id))
                if stored.released:  # handed back: nothing to renew while the reply is sent
                    await lease.stop()
                await outbox.flush(
                    chat_id, expect=pieces if stored.queued_before == 0 else None, claimed=stored.claimed
                )
                if stored.released:
                    return replies
                context = None

    async def _keep_lease(self, chat_id: int, period: float) -> None:
        """Renew the chat's reply lease every `period` (from `period` into a reply: see WhenSlow)."""
        while True:
            with contextlib.suppress(Exception):  # a missed renewal is retried; the lease outlives two
                async with self.database.raw() as connection:
                    await ReplyPathRepo(connection).renew_lease(chat_id, self.worker, utcnow() + self.reply_lease)
            await asyncio.sleep(period)

    async def _read_many(self, wanted: list[ReadWanted]) -> list[ChatState | None]:
        async with self.database.raw() as connection:
            return await ReplyPathRepo(connection).read_many(wanted, default_tz=self.default_tz, window=HISTORY_WINDOW)

    async def _context(self, chat_id: int) -> ReplyContext | None:
        """What the next reply needs, in one statement."""
        state = await self._reads.submit(ReadWanted(chat_id, None, self.recall))
        if state is None:  # forgotten meanwhile
            return None
        return self._reply_context(state.conversation, state.pending, state.recent, state.days, state.recalled)

    async def _release_if_idle(self, chat_id: int) -> bool:
        """Give up the lease unless more is owed; True when this worker is done with the chat."""
        async with self._unit() as session:
            # The row lock orders this check against `receive`, which stores under the same lock.
            row = await ConversationRepo(session).lock(chat_id)
            if row is None or row.reply_lease_owner not in (None, self.worker):
                return True
            if await MessageRepo(session).pending(chat_id):
                return False
            await ConversationRepo(session).update(chat_id, reply_lease_until=None, reply_lease_owner=None)
        return True

    async def _write_reply(
        self, context: ReplyContext, outbox: Outbox, ahead: asyncio.Task[Written] | None = None
    ) -> tuple[Reply, StoredReply, int] | None:
        """Write (or take the reply written ahead), store it with its outbox rows, count it."""
        row = context.conversation
        if ahead is not None:
            written = await ahead
        else:
            written = await self.writer.write(context, outbox.drafts if self.stream_replies else None)
        text, kind, stage, crisis = written.text, written.kind, written.stage, written.crisis
        sends = text_sends(text)
        async with self.database.raw() as connection:
            stored = await ReplyPathRepo(connection).store_reply(
                row.chat_id,
                worker=self.worker,
                kind=kind,
                text=text,
                through_id=context.pending[-1].id,
                seen_user_messages=row.user_messages,
                lease_until=utcnow() + self.reply_lease,
                sends=sends,
                recall_note=written.note,
                claim=outbox.claim_as,
            )
        message_id = stored.message_id
        if message_id is None:
            log.warning("reply_dropped", reason="another worker holds the chat's lease now")
            return None
        self.metrics.inc("aifriend_replies_total", kind=kind)
        self.metrics.observe("aifriend_reply_seconds", (utcnow() - context.pending[-1].created_at).total_seconds())
        log.info("reply_written", kind=kind, stage=stage.value, crisis=crisis, chars=len(text))
        return Reply(message_id, text, kind, stage, crisis, written.prompt), stored, len(sends)

    async def write_checkin(self, chat_id: int) -> str:
        """A check-in in the voice of the current stage, knowing the memory and the recent turns."""
        async with self._unit() as session:
            row = await ConversationRepo(session).get(chat_id)
            assert row is not None
            since = max(row.history_since_id, row.summarized_through_id)
            recent = await MessageRepo(session).recent(chat_id, since, HISTORY_WINDOW)
            today = utcnow().astimezone(self.zone(row)).date()
            days = await MemoryRepo(session).days(chat_id, today, 3)
        style = self.persona.style(Stage(row.state))
        system = system_message(
            style.system,
            Memory(row.memory_summary, tuple((d.day, d.text) for d in days)),
            self.persona.prompts.memory_heading,
        )
        turns = [Turn(m.role, m.text) for m in recent if m.kind in PROMPT_KINDS]
        # The instruction goes last as a user turn: chat templates expect to answer one.
        turns.append(Turn("user", self.persona.prompts.checkin))
        limits = await self.model.limits()
        budget = min(limits.max_input_tokens, limits.max_total_tokens - style.max_new_tokens)
        text = await self.writer.complete(build_prompt(system, turns, budget_tokens=budget), style.params)
        if not text.strip():
            raise GenerationFailedError("the model wrote an empty check-in")
        return text.strip()

    async def heal(self, outbox: Outbox) -> int:
        """Answer what a crashed worker left owed, several chats at once; returns how many were started."""
        room = HEAL_CONCURRENCY - len(self._healing)
        if room <= 0:
            return 0
        async with self._unit() as session:
            owed = await ConversationRepo(session).chats_owed_a_reply(utcnow(), limit=room)
        started = 0
        for chat_id in owed:
            if chat_id in self._healing:
                continue
            async with self._unit() as session:
                taken = await ConversationRepo(session).take_lease(
                    chat_id, self.worker, utcnow() + self.reply_lease, utcnow()
                )
            if taken:
                structlog.contextvars.bind_contextvars(chat_id=chat_id)
                log.info("reply_healing")
                self._healing.add(chat_id)
                self.spawn(self._heal_one(chat_id, outbox))
                structlog.contextvars.unbind_contextvars("chat_id")
                started += 1
        return started

    async def _heal_one(self, chat_id: int, outbox: Outbox) -> None:
        try:
            await self.respond(chat_id, outbox)
        finally:
            self._healing.discard(chat_id)

    # ---- commands and events -------------------------------------------------------

    async def cool_down(self, chat_id: int, now: datetime | None = None) -> bool:
        """Fire the long-silence event for one chat; True when it cooled."""
        now = now or utcnow()
        async with self._unit() as session:
            conversations = ConversationRepo(session)
            row = await conversations.lock(chat_id)
            if row is None or row.last_user_message_at is None:
                return False
            outcome = self.machine.advance(snapshot_of(row), SilenceEvent(now - row.last_user_message_at))
            if not outcome.changed:
                return False
            await conversations.update(chat_id, **fsm_columns(outcome.snapshot))
            await conversations.add_transitions(chat_id, transition_records(outcome.transitions))
        log.info("fsm_transitioned", chat_id=chat_id, trigger="cooldown", to_state=outcome.snapshot.stage)
        return True

    async def prune_updates(self, keep: timedelta = timedelta(days=7)) -> int:
        async with self._unit() as session:
            return await ConversationRepo(session).prune_updates(utcnow() - keep)

    async def conversation(self, chat_id: int) -> ConversationRow | None:
        async with self._unit() as session:
            return await ConversationRepo(session).get(chat_id)

    # ---- background work -----------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work off the reply path; kept in a set so it is neither lost nor leaked."""
        context = structlog.contextvars.get_contextvars()

        async def run() -> None:
            structlog.contextvars.bind_contextvars(**context)
            try:
                await work
            except Exception:
                log.exception("background_failed")

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background work (summaries) to finish: tests, shutdown, the demo."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def stop(self, grace: float) -> None:
        """Finish replies in flight within `grace`; cancel the rest and hand their chats back at once."""
        pending = list(self._background)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("shutdown_cut_short", tasks=len(late), grace_seconds=grace)
        with contextlib.suppress(Exception):
            async with self._unit() as session:
                released = await ConversationRepo(session).release_leases(self.worker)
            if released:
                log.info("reply_leases_handed_back", chats=released)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)
