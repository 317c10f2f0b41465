"""Proactive check-ins: claim what is due (exactly once across workers), write, pace, send.

The database coordinates the workers. A sweep locks due conversations with
`FOR UPDATE SKIP LOCKED`, records a claim (unique per conversation and due time) and
pushes the due time by a lease, all in one short transaction. The claimant writes the
check-in with no lock held, then stores it only if the plan is still the one it set: a
user who wrote meanwhile, or a worker that took over an expired lease, wins. A killed
worker's claims simply fall due again when their lease runs out.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from app.metrics import Metrics
from app.services.cooldown import Cooldown
from app.services.outbox import Outbox
from app.services.text import storable, text_sends
from app.services.values import ReplyRules, plan_checkin, utcnow
from app.services.writer import ReplyWriter
from llm.errors import LLMError
from scheduler.timing import CheckinPolicy, postpone_for_quiet_hours
from storage.checkins import CheckinRepo
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.memory import MemoryRepo
from storage.messages import MessageRepo
from storage.outbox import OutboxRepo

log = structlog.get_logger(__name__)

SEND_SLOT = "checkins"


@dataclass(frozen=True, slots=True)
class _Claim:
    claim_id: int
    chat_id: int
    lease_until: datetime


@dataclass
class SweepReport:
    claimed: int = 0
    sent: int = 0
    postponed: int = 0
    skipped: int = 0
    failed: int = 0
    cooled: int = 0


class CheckinService:
    def __init__(
        self,
        *,
        database: Database,
        writer: ReplyWriter,
        cooldown: Cooldown,
        policy: CheckinPolicy,
        rules: ReplyRules,
        metrics: Metrics,
        lease: timedelta = timedelta(seconds=30),
        per_second: float = 25.0,
        batch: int = 50,
    ) -> None:
        self.database = database
        self.writer = writer
        self.cooldown = cooldown
        self.policy = policy
        self.rules = rules
        self.metrics = metrics
        self.lease = lease
        self.send_interval = timedelta(seconds=1 / per_second)
        self.batch = batch

    async def sweep(self, outbox: Outbox, now: datetime | None = None) -> SweepReport:
        report = SweepReport()
        claims = await self._claim(now or utcnow(), report)
        for claim in claims:
            structlog.contextvars.bind_contextvars(chat_id=claim.chat_id)
            try:
                await self._send(claim, outbox, report)
            finally:
                structlog.contextvars.unbind_contextvars("chat_id")
        report.cooled = await self.cooldown.sweep(now or utcnow(), self.batch)
        self.metrics.inc("aifriend_checkin_sweeps_total")
        if claims or report.postponed or report.cooled:
            log.info("checkin_sweep", worker=self.rules.worker, **vars(report))
        return report

    async def release_claims(self) -> int:
        """At shutdown: claims this worker has not finished go back, due now, to the other workers."""
        released = await CheckinRepo(self.database).release(self.rules.worker)
        if released:
            log.info("checkin_claims_released", worker=self.rules.worker, chats=released)
        return released

    async def _claim(self, now: datetime, report: SweepReport) -> list[_Claim]:
        """Quiet hours are checked here, before any model call: a check-in due at night waits."""
        claims: list[_Claim] = []
        async with self.database.transaction() as tx:
            repo = CheckinRepo(tx)
            for due in await repo.due(now, self.policy.max_unanswered, self.batch):
                zone = ZoneInfo(due.timezone or self.policy.default_tz)
                morning = postpone_for_quiet_hours(now, zone, self.policy.quiet_hours, random.random())
                if morning is not None:
                    await repo.plan(due.chat_id, morning)
                    report.postponed += 1
                    continue
                lease_until = now + self.lease
                claim_id = await repo.claim(due.chat_id, due.due_at, self.rules.worker, lease_until)
                if claim_id is not None:
                    claims.append(_Claim(claim_id, due.chat_id, lease_until))
        report.claimed = len(claims)
        return claims

    async def _write(self, chat_id: int) -> str | None:
        """The check-in's text; None if the chat was forgotten (/forget) since it was claimed."""
        row = await ConversationRepo(self.database).get(chat_id)
        if row is None:
            return None
        since = max(row.history_since_id, row.summarized_through_id)
        recent = await MessageRepo(self.database).recent(chat_id, since, self.rules.history_window)
        today = utcnow().astimezone(ZoneInfo(row.timezone or self.rules.default_tz)).date()
        days = await MemoryRepo(self.database).days(chat_id, today, 3)
        return await self.writer.checkin(row, recent, days)

    async def _pace(self) -> None:
        """Wait for this send's slot: all workers together stay under Telegram's global limit."""
        slot = await CheckinRepo(self.database).send_slot(SEND_SLOT, self.send_interval)
        wait = (slot - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, claim: _Claim, outbox: Outbox, report: SweepReport) -> None:
        try:
            text = await self._write(claim.chat_id)
        except (LLMError, TimeoutError) as exc:
            log.warning("checkin_not_written", error=str(exc) or "no answer within LLM_TIMEOUT")
            async with self.database.transaction() as tx:
                repo = CheckinRepo(tx)
                if await repo.still_mine(claim.chat_id, claim.lease_until) is not None:
                    await repo.plan(claim.chat_id, utcnow() + self.policy.after / 4)
                await repo.finish(claim.claim_id, "failed", note=str(exc)[:500])
            report.failed += 1
            return
        if text is None:
            report.skipped += 1
            return
        # Wait for the send slot before storing: stored and sent are then milliseconds apart.
        await self._pace()
        async with self.database.transaction() as tx:
            repo = CheckinRepo(tx)
            before = await repo.still_mine(claim.chat_id, claim.lease_until)
            if before is None:
                await repo.finish(
                    claim.claim_id, "skipped", note="the plan changed meanwhile (a reply, or a newer claim)"
                )
                report.skipped += 1
                return
            text = storable(text)
            message_id = await ConversationRepo(tx).add_message(
                claim.chat_id, role="assistant", kind="checkin", text=text
            )
            await OutboxRepo(tx).enqueue(claim.chat_id, text_sends(text), message_id=message_id)
            next_at = plan_checkin(self.policy, utcnow(), enabled=True, unanswered=before + 1)
            await repo.record_sent(claim.chat_id, claim_id=claim.claim_id, message_id=message_id, next_at=next_at)
        report.sent += 1
        self.metrics.inc("aifriend_replies_total", kind="checkin")
        log.info("checkin_queued", unanswered=before + 1)
        await outbox.flush(claim.chat_id)
