"""A friend who follows up: plans a user mentions are asked about once, after they happened, at a
polite hour; reminders a user asks for are sent once, at the asked minute.

Noting happens when a message is answered, before its reply is written (`app.plans` reads it;
nothing depends on the model), so a crash after storing it loses no plan: whoever answers the
message reads it, and a message read twice keeps one. A reminder is confirmed in the chat then.

Sending happens in every scheduler process: due rows are claimed with `SKIP LOCKED` and a claim
that expires, and a row's message, its outbox rows and its `sent` status are stored in one
transaction that holds only while the claim is this worker's, so two schedulers never both
write one. A follow-up is written by the model with the plan in its prompt; it is skipped when
check-ins are off or the user already talked about it after it happened. A reminder is sent
whatever quiet hours, `/checkins` or FOLLOWUPS say.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from app.metrics import Metrics
from app.persona import Persona
from app.plans import ENGLISH, GRAMMARS, Found, find
from app.services.holds import local_time
from app.services.outbox import Outbox
from app.services.text import storable, text_sends
from app.services.values import ReplyContext, ReplyRules, utcnow
from app.services.writer import ReplyWriter
from llm.errors import LLMError
from scheduler.timing import QuietHours
from storage.conversations import ConversationRepo
from storage.database import Database, Executor
from storage.followups import DueFollowup, Followup, FollowupRepo, NewFollowup
from storage.memory import MemoryRepo
from storage.messages import MessageRepo
from storage.outbox import OutboxRepo
from storage.rows import ConversationRow

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 3  # a follow-up the model could not write this often is skipped, not retried forever
RETRY_AFTER = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class FollowupRules:
    enabled: bool = True  # FOLLOWUPS: plans are asked about (reminders always work)
    delay: timedelta = timedelta(hours=2)  # FOLLOWUP_DELAY
    quiet_hours: QuietHours = field(default_factory=lambda: QuietHours(22, 8))
    lease: timedelta = timedelta(minutes=2)  # how long a scheduler's claim on a due row lasts
    batch: int = 50


class _ClaimLost(Exception):
    """Another scheduler finished this row meanwhile: what this one stored is rolled back."""


class Followups:
    def __init__(
        self,
        *,
        database: Database,
        writer: ReplyWriter,
        persona: Persona,
        rules: ReplyRules,
        followups: FollowupRules,
        metrics: Metrics,
    ) -> None:
        self.database = database
        self.writer = writer
        self.persona = persona
        self.rules = rules
        self.settings = followups
        self.metrics = metrics

    async def note_owed(self, context: ReplyContext, outbox: Outbox) -> None:
        """Keep the plans and reminders in what `context` owes a reply, before the reply is written.

        Read here rather than when a message is stored, so a process that died in between loses
        nothing: whichever process answers the message reads it. A message read twice (a round
        that lost its lease, a healed chat) keeps one plan or reminder and one confirmation.
        Dates count from when the user wrote the message ("in 5 minutes", "tomorrow")."""
        conversation = context.conversation
        zone = ZoneInfo(conversation.timezone or self.rules.default_tz)
        for message in context.pending:
            found = find(message.text, now=message.created_at, zone=zone, language=conversation.language_code)
            if found is not None and (found.kind == "reminder" or self.settings.enabled):
                await self._keep(conversation, message.id, found, zone, outbox)

    async def _keep(
        self, conversation: ConversationRow, message_id: int, found: Found, zone: ZoneInfo, outbox: Outbox
    ) -> None:
        """Store a plan or reminder read from the message, and confirm a reminder in the chat; nothing
        when that message was read before."""
        chat_id = conversation.chat_id
        due = found.at if found.kind == "reminder" else self._polite(found.at + self.settings.delay, zone)
        grammar = GRAMMARS.get((conversation.language_code or "en")[:2].lower(), ENGLISH)
        topic = grammar.event.search(found.what) if found.kind == "plan" else None
        new = NewFollowup(chat_id, found.kind, found.what, topic.group(0) if topic else None, found.at, due, message_id)
        async with self.database.transaction() as tx:
            if await FollowupRepo(tx).add(new) is None:  # read before: kept and confirmed then
                return
            if found.kind == "reminder":
                confirm = self.persona.notices.reminder_set.format(
                    when=_at(local_time(found.at, zone)), what=found.what
                )
                confirmed = await ConversationRepo(tx).add_message(
                    chat_id, role="assistant", kind="other", text=confirm
                )
                await OutboxRepo(tx).enqueue(chat_id, text_sends(confirm), message_id=confirmed)
        log.info("followup_noted", kind=found.kind, event_at=found.at.isoformat(), due_at=due.isoformat())
        if found.kind == "reminder":
            outbox.kick(chat_id)

    async def sweep(self, outbox: Outbox, now: datetime | None = None) -> int:
        """Send what is due now (this worker's share); how many were sent."""
        now = now or utcnow()
        claims = await FollowupRepo(self.database).claim_due(
            now, worker=self.rules.worker, until=now + self.settings.lease, limit=self.settings.batch
        )
        sent = 0
        for due in claims:
            structlog.contextvars.bind_contextvars(chat_id=due.chat_id)
            try:
                sent += await self._one(due, outbox, now)
            finally:
                structlog.contextvars.unbind_contextvars("chat_id")
        return sent

    async def _one(self, due: DueFollowup, outbox: Outbox, now: datetime) -> int:
        repo = FollowupRepo(self.database)
        if due.kind == "reminder":
            return await self._deliver(due, "reminder", self.persona.notices.reminder.format(what=due.what), outbox)
        zone = ZoneInfo(due.timezone or self.rules.default_tz)
        if not due.checkins_enabled:
            await repo.finish(due.id, self.rules.worker, "skipped")
            log.info("followup_skipped", reason="check-ins are off")
            return 0
        if due.topic and await repo.talked_about(due.chat_id, due.topic, due.event_at):
            await repo.finish(due.id, self.rules.worker, "skipped")
            log.info("followup_skipped", reason="the user talked about it already")
            return 0
        polite = self._polite(now, zone)
        if polite > now:  # due at night (the setting changed, or the claim ran late): the morning
            await repo.release(due.id, self.rules.worker, polite)
            return 0
        try:
            written = await self._write(due, zone)
        except (LLMError, TimeoutError) as exc:
            gave_up = due.attempts >= MAX_ATTEMPTS
            log.warning("followup_not_written", error=str(exc) or "no answer within LLM_TIMEOUT", gave_up=gave_up)
            if gave_up:
                await repo.finish(due.id, self.rules.worker, "skipped")
            else:
                await repo.release(due.id, self.rules.worker, now + RETRY_AFTER)
            return 0
        if written is None:  # the chat was forgotten meanwhile
            return 0
        return await self._deliver(due, "followup", written, outbox)

    async def _write(self, due: DueFollowup, zone: ZoneInfo) -> str | None:
        row = await ConversationRepo(self.database).get(due.chat_id)
        if row is None:
            return None
        since = max(row.history_since_id, row.summarized_through_id)
        recent = await MessageRepo(self.database).recent(due.chat_id, since, self.rules.history_window)
        days = await MemoryRepo(self.database).days(due.chat_id, utcnow().astimezone(zone).date(), 3)
        when = f"{due.event_at.astimezone(zone):%A %d %B at %H:%M}"
        instruction = self.persona.prompts.followup.format(what=due.what, when=when)
        return await self.writer.checkin(row, recent, days, instruction)

    async def _deliver(self, due: DueFollowup, kind: str, text: str, outbox: Outbox) -> int:
        """Store the message, queue it and mark the row sent, together, while the claim is ours."""
        text = storable(text)
        with contextlib.suppress(_ClaimLost):
            async with self.database.transaction() as tx:
                message_id = await ConversationRepo(tx).add_message(due.chat_id, role="assistant", kind=kind, text=text)
                await OutboxRepo(tx).enqueue(due.chat_id, text_sends(text), message_id=message_id)
                if not await FollowupRepo(tx).finish(due.id, self.rules.worker, "sent", message_id):
                    raise _ClaimLost()
            self.metrics.inc("aifriend_replies_total", kind=kind)
            log.info("followup_sent", kind=kind, followup_id=due.id)
            await outbox.flush(due.chat_id)
            return 1
        log.info("followup_claim_lost", followup_id=due.id)
        return 0

    async def coming(self, tx: Executor, chat_id: int) -> list[Followup]:
        """What /reminders lists: plans and reminders still to come, soonest first."""
        return await FollowupRepo(tx).coming(chat_id)

    async def cancel(self, tx: Executor, chat_id: int, followup_id: int) -> str | None:
        what = await FollowupRepo(tx).cancel(chat_id, followup_id)
        if what is not None:
            log.info("followup_cancelled", followup_id=followup_id)
        return what

    def _polite(self, when: datetime, zone: ZoneInfo) -> datetime:
        """`when`, or the end of the user's quiet hours if it falls in them."""
        return self.settings.quiet_hours.end_after(when.astimezone(zone))


def _at(when: str) -> str:
    """ "at 09:00" today, "on Tuesday 09:00" on another day."""
    return f"at {when}" if ":" in when and " " not in when else f"on {when}"
