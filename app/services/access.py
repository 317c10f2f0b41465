"""Operators' side of who may talk and how much, and what users ask about it: invite codes, let in,
block, refuse, own limits, /usage, and Telegram's word that a user blocked or unblocked the bot.

Each call works in the caller's transaction (a Telegram update's unit of work, or the CLI's), so a
decision, its log row and its answer are kept together. Lifting a hold needs no wake-up call: the
healer (every 2 s) answers a chat whose hold is gone, with everything kept meanwhile in one reply.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from app.services.gate import AccessRules, access_hold, next_midnight
from app.services.values import utcnow
from storage.access import AccessRepo, OwnLimits, Redemption, Usage
from storage.conversations import ConversationRepo
from storage.database import Executor

log = structlog.get_logger(__name__)

CODE_BYTES = 16  # 128 random bits: a code is never guessed, however many are tried


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What /usage shows: the user's limits and what is left of them."""

    replies_limit: int
    replies_last_minute: int
    tokens_limit: int
    tokens_today: int
    day_ends: datetime  # local midnight, when the day's tokens start again
    zone: ZoneInfo


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


class AccessDesk:
    def __init__(self, rules: AccessRules, default_tz: str) -> None:
        self.rules = rules
        self.default_tz = default_tz

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.rules.admins

    async def invite(self, tx: Executor, *, uses: int, valid: timedelta, by_user_id: int | None) -> str:
        """A new code (shown once, stored only as its hash), logged `invited`."""
        code = secrets.token_urlsafe(CODE_BYTES)
        await AccessRepo(tx).invite(code_hash(code), uses=uses, valid=valid, now=utcnow(), by_user_id=by_user_id)
        log.info("invite_created", uses=uses, valid_seconds=valid.total_seconds(), by_user_id=by_user_id)
        return code

    async def redeem(self, tx: Executor, user_id: int, code: str) -> Redemption:
        redemption = await AccessRepo(tx).redeem(user_id, code_hash(code))
        log.info("invite_code_tried", user_id=user_id, outcome=redemption.outcome.value)
        return redemption

    async def needs_code(self, tx: Executor, user_id: int) -> str | None:
        """Why this user may not talk yet (the access hold's reason), or None."""
        if self.is_admin(user_id):
            return None
        limits = await AccessRepo(tx).own_limits(user_id)
        return access_hold(limits.access if limits else None, self.rules.mode)

    async def is_blocked(self, tx: Executor, user_id: int | None) -> bool:
        if user_id is None or self.is_admin(user_id):
            return False
        limits = await AccessRepo(tx).own_limits(user_id)
        return limits is not None and limits.access == "blocked"

    async def decide(self, tx: Executor, user_id: int, action: str, *, by_user_id: int | None) -> None:
        """`allowed`, `approved`, `refused` or `blocked`, recorded and logged; a let-in lifts the
        user's access hold (the healer then answers what they wrote meanwhile)."""
        access = {"allowed": "allowed", "approved": "allowed", "refused": "refused", "blocked": "blocked"}[action]
        lifted = await AccessRepo(tx).decide(user_id, access, action=action, by_user_id=by_user_id)
        log.info("access_decided", user_id=user_id, action=action, by_user_id=by_user_id, chats_lifted=len(lifted))

    async def set_limits(
        self, tx: Executor, user_id: int, *, replies: int | None, tokens: int | None, by_user_id: int | None
    ) -> None:
        await AccessRepo(tx).set_limits(user_id, replies=replies, tokens=tokens, by_user_id=by_user_id)
        log.info("limits_set", user_id=user_id, replies=replies, tokens=tokens, by_user_id=by_user_id)

    async def standing(self, tx: Executor, user_id: int, chat_id: int) -> UsageReport:
        own = await AccessRepo(tx).own_limits(user_id) or OwnLimits(None, None, None)
        usage: Usage = await AccessRepo(tx).usage(user_id, chat_id, self.default_tz)
        zone = ZoneInfo(usage.timezone or self.default_tz)
        return UsageReport(
            replies_limit=_own(own.limit_replies_per_minute, self.rules.replies_per_minute),
            replies_last_minute=usage.replies_last_minute,
            tokens_limit=_own(own.limit_tokens_per_day, self.rules.tokens_per_day),
            tokens_today=usage.tokens_today,
            day_ends=next_midnight(utcnow(), zone),
            zone=zone,
        )

    async def telegram_member(self, tx: Executor, chat_id: int, *, blocked: bool) -> None:
        """Telegram says the user blocked the bot (no check-ins, nothing sent) or unblocked it."""
        conversations = ConversationRepo(tx)
        if blocked:
            await conversations.deactivate(chat_id)
        else:
            await conversations.reactivate(chat_id)
        log.info("telegram_member_changed", blocked=blocked)


def _own(limit: int | None, default: int) -> int:
    return default if limit is None else limit
