"""A user's message on its way in: stored and scored, the relationship moved, its responder chosen.

Every text message takes the same path, a new chat's first one included: read the chat (one
statement), decide in Python (the stage machine, who answers), write it all (one statement that
writes only if the chat is still as read). If something changed the chat in between (another
message, a command, a reply handing its lease back), nothing is written and the chat is read
again; after a few such rounds the chat's row is locked for the store, so a busy chat still
gets its turn. No transaction is held open on the way.

The responder is the one worker (of any number of processes) that writes the chat's replies: a
message that finds a live lease is stored and answered in that worker's next round.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from app.metrics import Metrics
from app.services.stages import announce
from app.services.text import clean_text
from app.services.values import (
    DayEnded,
    Received,
    ReplyContext,
    ReplyRules,
    context_of,
    fsm_columns,
    held_now,
    plan_checkin,
    snapshot_of,
    transition_records,
    utcnow,
)
from fsm import MessageEvent, RelationshipMachine, Stage, Transition
from llm.sentiment import SentimentScorer, detect_crisis
from scheduler.timing import CheckinPolicy
from storage.conversations import ConversationRepo
from storage.database import Database, Executor
from storage.reply_path import Changed, ChatState, Duplicate, MessageWrite, ReplyPathRepo, Stored
from storage.rows import ConversationRow, MessageRow, UserInfo
from storage.sql import values_of

log = structlog.get_logger(__name__)

OPTIMISTIC_ROUNDS = 4  # reads and guarded stores of one message before the chat's row is locked for it


@dataclass(frozen=True, slots=True)
class Incoming:
    """A user's text message as it arrived, scored."""

    chat_id: int
    user: UserInfo
    text: str
    event: MessageEvent
    telegram_message_id: int | None
    update_id: int | None
    kind: str = "text"


@dataclass(frozen=True, slots=True)
class Decision:
    write: MessageWrite  # what storing the message writes
    stage: Stage
    transitions: tuple[Transition, ...]
    responder: bool


class Intake:
    def __init__(
        self,
        *,
        database: Database,
        scorer: SentimentScorer,
        machine: RelationshipMachine,
        checkins: CheckinPolicy,
        rules: ReplyRules,
        metrics: Metrics,
    ) -> None:
        self.database = database
        self.scorer = scorer
        self.machine = machine
        self.checkins = checkins
        self.rules = rules
        self.metrics = metrics

    async def receive(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        *,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
        kind: str = "text",
    ) -> Received:
        """Store one message (once, however often it is delivered) and say who answers it.
        `kind`: "voice" for a voice note's transcript, which otherwise counts as typed text."""
        text = clean_text(text) or "…"
        sentiment = await self.scorer.score(text)
        event = MessageEvent(sentiment.negative, sentiment.positive, detect_crisis(text))
        message = Incoming(chat_id, user, text, event, telegram_message_id, update_id, kind)
        rounds = 0
        while True:
            rounds += 1
            if rounds <= OPTIMISTIC_ROUNDS:
                outcome = await self._store(self.database, message)
            else:
                async with self.database.transaction() as tx:
                    await ConversationRepo(tx).lock(chat_id)
                    outcome = await self._store(tx, message)
            if outcome is not None:
                return outcome

    async def _store(self, executor: Executor, message: Incoming) -> Received | None:
        """One round: read, decide, store. None: the chat changed meanwhile, nothing was written."""
        repo = ReplyPathRepo(executor)
        # With a debounce the reply reads its context again once the burst is over: recall then.
        recall = 0 if self.rules.debounce.total_seconds() > 0 else self.rules.recall
        state = await repo.read(
            message.chat_id,
            default_tz=self.rules.default_tz,
            window=self.rules.history_window,
            query=message.text,
            recall=recall,
            replies_limit=self.rules.access.replies_per_minute,
            tokens_limit=self.rules.access.tokens_per_day,
        )
        row = state.conversation if state else None
        decision = self._decide(row, message, utcnow())
        stored = await repo.store_message(message.chat_id, message.user, decision.write, seen=row)
        if isinstance(stored, Changed):
            return None
        if isinstance(stored, Duplicate):
            log.info("update_duplicate_skipped")
            return Received(None, duplicate=True)
        self.metrics.inc("aifriend_messages_received_total")
        if row is None:
            log.info("conversation_started")
        announce(self.metrics, decision.transitions)
        context = None
        if decision.responder and state is not None:  # the first reply needs what was just read
            context = _context_after(state, message, stored, decision.write, self.rules)
        return Received(
            stored.message_id,
            decision.stage,
            decision.transitions,
            decision.responder,
            context=context,
            day_ended=self._day_ended(row, decision.write.now) if row else None,
        )

    def _decide(self, row: ConversationRow | None, message: Incoming, now: datetime) -> Decision:
        """Where the message moves the relationship, and whether this worker becomes the responder:
        it does unless another holds a live lease on the chat."""
        if row is None:  # the chat's first message: it starts in icebreaker
            begin = RelationshipMachine.begin()
            snapshot, started = begin.snapshot, begin.transitions
        else:
            snapshot, started = snapshot_of(row), ()
        moved = self.machine.advance(snapshot, message.event)
        lease_free = row is None or row.reply_lease_until is None or row.reply_lease_until < now
        responder = lease_free and not (row is not None and held_now(row, now))
        write = MessageWrite(
            text=message.text,
            telegram_message_id=message.telegram_message_id,
            update_id=message.update_id,
            negative=message.event.negative,
            positive=message.event.positive,
            moved=fsm_columns(moved.snapshot),
            transitions=transition_records(started + moved.transitions),
            now=now,
            next_checkin_at=plan_checkin(self.checkins, now, enabled=row.checkins_enabled if row else True),
            lease_until=now + self.rules.lease if responder else (row.reply_lease_until if row else None),
            lease_owner=self.rules.worker if responder else (row.reply_lease_owner if row else None),
            kind=message.kind,
        )
        return Decision(write, moved.snapshot.stage, started + moved.transitions, responder)

    def _day_ended(self, row: ConversationRow, now: datetime) -> DayEnded | None:
        if row.last_user_message_at is None:
            return None
        zone = ZoneInfo(row.timezone or self.rules.default_tz)
        previous = row.last_user_message_at.astimezone(zone).date()
        return DayEnded(previous, zone) if previous != now.astimezone(zone).date() else None


def _context_after(
    state: ChatState, message: Incoming, stored: Stored, write: MessageWrite, rules: ReplyRules
) -> ReplyContext:
    """The reply context once the message is stored, from what was read just before the store."""
    this = MessageRow(
        stored.message_id,
        message.chat_id,
        "user",
        message.kind,
        message.text,
        stored.created_at,
        message.telegram_message_id,
        sentiment_negative=write.negative,
        sentiment_positive=write.positive,
    )
    now = replace(
        state.conversation,
        **values_of(write.moved),
        user_messages=state.conversation.user_messages + 1,
        last_user_message_at=write.now,
        reply_lease_until=write.lease_until,
        reply_lease_owner=write.lease_owner,
    )
    return context_of(state, rules, also=this, now=now)
