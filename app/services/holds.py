"""The gate on the reply path: before a chat's reply goes to the model, may it (`app.services.gate`
decides from what was read), and is this user's first message admitted at NEWCOMERS_PER_MINUTE?

A chat that may not be answered is held in one transaction: the hold is stored, the lease handed
back, and, the first time for this reason, the user is told (and in `approval` mode the operators
are asked, with buttons). Its messages stay stored; the healer answers them together when a
limit's hold ends, and an operator's let-in wakes the chat at once.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from app.metrics import Metrics
from app.persona import Notices
from app.services.gate import AccessRules, Hold, hold_for, is_newcomer
from app.services.model_queue import Priority
from app.services.outbox import Outbox
from app.services.text import text_sends
from app.services.values import ReplyContext, ReplyRules, utcnow
from storage.access import AccessRepo
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.outbox import OutboxRepo, Outgoing
from storage.rows import ConversationRow

log = structlog.get_logger(__name__)

APPROVE, REFUSE = "access:approve:", "access:refuse:"


class Holds:
    def __init__(self, *, database: Database, notices: Notices, rules: ReplyRules, metrics: Metrics) -> None:
        self.database = database
        self.notices = notices
        self.rules = rules
        self.access: AccessRules = rules.access
        self.metrics = metrics

    async def check(self, context: ReplyContext, outbox: Outbox) -> Priority | None:
        """The place in the model's queue for this chat's reply, or None: the chat is held (and
        its lease handed back), nothing is to be written now."""
        row = context.conversation
        if context.standing is None:
            return Priority.CONVERSATION
        now = utcnow()
        zone = ZoneInfo(row.timezone or self.rules.default_tz)
        hold = hold_for(row, context.standing, self.access, now, zone)
        newcomer = is_newcomer(row)
        if hold is None and newcomer and self.access.newcomers_per_minute > 0 and row.user_id not in self.access.admins:
            async with self.database.transaction() as tx:
                next_at = await AccessRepo(tx).admit(row.user_id, self.access.newcomers_per_minute)
            if next_at is None:
                self.metrics.inc("aifriend_newcomers_admitted_total")
            else:
                self.metrics.inc("aifriend_newcomers_deferred_total")
                hold = Hold("newcomers", next_at)
        if hold is None:
            return Priority.NEWCOMER if newcomer else Priority.CONVERSATION
        await self._hold(row, hold, zone, context, outbox)
        return None

    async def _hold(
        self, row: ConversationRow, hold: Hold, zone: ZoneInfo, context: ReplyContext, outbox: Outbox
    ) -> None:
        asked: list[int] = []
        told = False
        async with self.database.transaction() as tx:
            newly = await AccessRepo(tx).hold(row.chat_id, self.rules.worker, hold.reason, hold.until)
            if newly is None:  # another worker holds the chat now; it decides
                return
            if newly and hold.reason != "blocked":
                text = self.notice(hold, zone)
                message_id = await ConversationRepo(tx).add_message(
                    row.chat_id, role="assistant", kind="other", text=text
                )
                await OutboxRepo(tx).enqueue(row.chat_id, text_sends(text), message_id=message_id)
                told = True
            if newly and hold.reason == "approval" and await AccessRepo(tx).ask(row.user_id):
                first = context.pending[0].text if context.pending else ""
                for admin in sorted(self.access.admins):
                    await OutboxRepo(tx).enqueue(admin, approval_request(row, first))
                    asked.append(admin)
        log.info("chat_held", reason=hold.reason, until=hold.until.isoformat() if hold.until else None, told=told)
        if newly:
            self.metrics.inc("aifriend_held_total", reason=hold.reason)
        for admin in asked:
            outbox.kick(admin)
        if told:
            await outbox.flush(row.chat_id)

    def notice(self, hold: Hold, zone: ZoneInfo) -> str:
        """What the friend says once when it holds a chat, with when the user can talk again."""
        template: str = getattr(self.notices, hold.reason)
        return template.format(until=local_time(hold.until, zone) if hold.until else "")


def local_time(when: datetime, zone: ZoneInfo) -> str:
    """`14:05` today, or `Tuesday 00:00` on another day, in the user's zone."""
    local = when.astimezone(zone)
    if local.date() == utcnow().astimezone(zone).date():
        return f"{local:%H:%M}"
    return f"{local:%A %H:%M}"


def approval_request(row: ConversationRow, first: str) -> list[Outgoing]:
    """The question to an operator, with approve and refuse buttons."""
    who = row.first_name or "Someone"
    handle = f" (@{row.username})" if row.username else ""
    said = first if len(first) <= 200 else first[:200] + "…"
    text = f"{who}{handle}, user {row.user_id}, would like to talk. Their first message:\n\n{said}"
    buttons = {
        "inline_keyboard": [
            [
                {"text": "Approve", "callback_data": f"{APPROVE}{row.user_id}"},
                {"text": "Refuse", "callback_data": f"{REFUSE}{row.user_id}"},
            ]
        ]
    }
    return text_sends(text, buttons)
