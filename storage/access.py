"""Who may talk and how much: operators' word on users, invite codes, holds on chats, the log of
every decision. The reply path reads a user's standing with the chat (`storage.reply_path`);
this is everything else, off the hot path."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.database import Executor
from storage.sql import Statement, read_row

CODE_FAILURES_PER_HOUR = 10  # wrong codes one user may try before their codes are refused for an hour
CODE_FAILURES_PER_MINUTE = 60  # wrong codes all users together may try per minute

_DECIDE = Statement("""
    WITH decided AS (
        INSERT INTO user_access (user_id, access) VALUES (:user_id, CAST(:access AS text))
        ON CONFLICT (user_id) DO UPDATE SET access = EXCLUDED.access, updated_at = now()
    ), logged AS (
        INSERT INTO access_decisions (user_id, action, by_user_id, detail)
        VALUES (:user_id, :action, CAST(:by_user_id AS bigint), CAST(:detail AS text))
    ), lifted AS (
        UPDATE conversations SET held_for = NULL, held_until = NULL, updated_at = now()
         WHERE user_id = :user_id AND CAST(:access AS text) IN ('allowed', 'refused')
           AND held_for IN ('allowlist', 'invite', 'approval', 'refused', 'blocked')
        RETURNING chat_id
    ), stopped AS (
        UPDATE conversations SET held_for = 'blocked', held_until = NULL, next_checkin_at = NULL, updated_at = now()
         WHERE user_id = :user_id AND CAST(:access AS text) = 'blocked'
    )
    SELECT coalesce(array_agg(chat_id), '{}') AS chats FROM lifted
""")
# A chat held by a limit is looked at again at once (the healer): the new limit may let it talk.
_SET_LIMITS = Statement("""
    WITH set AS (
        INSERT INTO user_access (user_id, limit_replies_per_minute, limit_tokens_per_day)
        VALUES (:user_id, CAST(:replies AS integer), CAST(:tokens AS bigint))
        ON CONFLICT (user_id) DO UPDATE
           SET limit_replies_per_minute = EXCLUDED.limit_replies_per_minute,
               limit_tokens_per_day = EXCLUDED.limit_tokens_per_day, updated_at = now()
    ), again AS (
        UPDATE conversations SET held_until = now()
         WHERE user_id = :user_id AND held_for IN ('replies', 'tokens')
    )
    INSERT INTO access_decisions (user_id, action, by_user_id, detail)
    VALUES (:user_id, 'limit_set', CAST(:by_user_id AS bigint), :detail)
""")
_STANDING = Statement("""
    SELECT a.access, a.limit_replies_per_minute, a.limit_tokens_per_day FROM user_access AS a WHERE a.user_id = :user_id
""")
_INVITE = Statement("""
    WITH code AS (
        INSERT INTO invite_codes (code_hash, uses_left, expires_at, created_by)
        VALUES (:code_hash, :uses, :expires_at, CAST(:by_user_id AS bigint))
    )
    INSERT INTO access_decisions (user_id, action, by_user_id, detail)
    VALUES (NULL, 'invited', CAST(:by_user_id AS bigint), :detail)
""")
_FAILURES = Statement("""
    SELECT (SELECT count(*) FROM code_attempts WHERE user_id = :user_id AND at > now() - interval '1 hour') AS mine,
           (SELECT min(at) FROM (SELECT at FROM code_attempts WHERE user_id = :user_id
                                   AND at > now() - interval '1 hour' ORDER BY at DESC LIMIT :per_hour) AS q)
               AS oldest,
           (SELECT count(*) FROM code_attempts WHERE at > now() - interval '1 minute') AS everyone
""")
_REDEEM = Statement("""
    UPDATE invite_codes SET uses_left = uses_left - 1
     WHERE code_hash = :code_hash AND uses_left > 0 AND expires_at > now()
    RETURNING code_hash
""")
_WRONG = Statement("INSERT INTO code_attempts (user_id) VALUES (:user_id)")
_HOLD = Statement("""
    WITH before AS (SELECT held_for FROM conversations WHERE chat_id = :chat_id FOR UPDATE)
    UPDATE conversations AS c
       SET held_for = :held_for, held_until = CAST(:held_until AS timestamptz),
           reply_lease_until = NULL, reply_lease_owner = NULL, updated_at = now()
      FROM before
     WHERE c.chat_id = :chat_id AND (c.reply_lease_owner = :worker OR c.reply_lease_owner IS NULL)
    RETURNING before.held_for IS DISTINCT FROM :held_for AS newly
""")
_ASK = Statement("""
    INSERT INTO user_access (user_id, access) VALUES (:user_id, 'pending')
    ON CONFLICT (user_id) DO UPDATE SET access = 'pending', updated_at = now() WHERE user_access.access IS NULL
    RETURNING user_id
""")
_PENDING = Statement("""
    SELECT a.user_id, u.username, u.first_name, a.updated_at AS since
      FROM user_access AS a LEFT JOIN users AS u ON u.id = a.user_id
     WHERE a.access = 'pending' ORDER BY a.updated_at LIMIT :limit
""")
# Newcomers are let through one at a time (the advisory lock), so replicas never admit more than
# the pace between them.
_LOCK_ADMISSIONS = Statement("SELECT pg_advisory_xact_lock(7320250001)")
_ADMIT = Statement("""
    WITH recent AS (
        SELECT admitted_at FROM users WHERE admitted_at > now() - interval '1 minute'
         ORDER BY admitted_at DESC LIMIT :per_minute
    ), room AS (
        SELECT count(*) < :per_minute AS free, min(admitted_at) + interval '1 minute' AS next_at FROM recent
    ), admitted AS (
        UPDATE users SET admitted_at = now() WHERE id = :user_id AND admitted_at IS NULL AND (SELECT free FROM room)
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM admitted) OR EXISTS (SELECT 1 FROM users WHERE id = :user_id
                                                       AND admitted_at IS NOT NULL) AS admitted,
           (SELECT next_at FROM room) AS next_at
""")
_USAGE = Statement("""
    SELECT coalesce((SELECT d.tokens FROM usage_days AS d JOIN users AS u ON u.id = d.user_id
                      WHERE d.user_id = :user_id
                        AND d.day = (now() AT TIME ZONE coalesce(u.timezone, CAST(:default_tz AS text)))::date), 0)
               AS tokens_today,
           (SELECT count(*) FROM messages AS m
             WHERE m.chat_id = :chat_id AND m.role = 'assistant' AND m.kind IN ('reply', 'fallback')
               AND m.created_at > now() - interval '60 seconds') AS replies_last_minute,
           (SELECT timezone FROM users WHERE id = :user_id) AS timezone
""")
_DECISIONS = Statement("""
    SELECT id, user_id, action, by_user_id, detail, created_at FROM access_log ORDER BY id DESC LIMIT :limit
""")


class Redeemed(enum.Enum):
    LET_IN = "let in"
    WRONG = "wrong"  # unknown, used up or expired: the same answer, so nothing is learnt from it
    TOO_MANY = "too many"  # this user tried too many wrong codes: refused for an hour
    BUSY = "busy"  # too many wrong codes from everyone this minute


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: Redeemed
    retry_at: datetime | None = None  # TOO_MANY: when this user may try again


@dataclass(frozen=True, slots=True)
class OwnLimits:
    access: str | None
    limit_replies_per_minute: int | None
    limit_tokens_per_day: int | None


@dataclass(frozen=True, slots=True)
class Waiting:
    user_id: int
    username: str | None
    first_name: str | None
    since: datetime


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_today: int
    replies_last_minute: int
    timezone: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    id: int
    user_id: int | None
    action: str
    by_user_id: int | None
    detail: str | None
    created_at: datetime


class AccessRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def decide(
        self, user_id: int, access: str, *, action: str, by_user_id: int | None, detail: str | None = None
    ) -> list[int]:
        """Record an operator's word (allowed, refused, blocked) and log it; the chats whose access
        hold it lifted (allowed: their messages are answered; refused: they are told, once)."""
        chats = await self.executor.fetchval(
            _DECIDE, user_id=user_id, access=access, action=action, by_user_id=by_user_id, detail=detail
        )
        return list(chats)

    async def set_limits(
        self, user_id: int, *, replies: int | None, tokens: int | None, by_user_id: int | None
    ) -> None:
        """A user's own limits (None: the setting again), logged as `limit_set`."""
        detail = f"replies_per_minute={_shown(replies)} tokens_per_day={_shown(tokens)}"
        await self.executor.execute(
            _SET_LIMITS, user_id=user_id, replies=replies, tokens=tokens, by_user_id=by_user_id, detail=detail
        )

    async def own_limits(self, user_id: int) -> OwnLimits | None:
        row = await self.executor.fetchrow(_STANDING, user_id=user_id)
        return read_row(OwnLimits, row) if row is not None else None

    async def invite(
        self, code_hash: str, *, uses: int, valid: timedelta, now: datetime, by_user_id: int | None
    ) -> None:
        detail = f"uses={uses} valid_until={(now + valid).isoformat(timespec='minutes')}"
        await self.executor.execute(
            _INVITE, code_hash=code_hash, uses=uses, expires_at=now + valid, by_user_id=by_user_id, detail=detail
        )

    async def redeem(self, user_id: int, code_hash: str) -> Redemption:
        """Try a code (in the caller's transaction); a code that lets the user in is logged `allowed`."""
        failures = await self.executor.fetchrow(_FAILURES, user_id=user_id, per_hour=CODE_FAILURES_PER_HOUR)
        assert failures is not None
        if failures["mine"] >= CODE_FAILURES_PER_HOUR:
            return Redemption(Redeemed.TOO_MANY, failures["oldest"] + timedelta(hours=1))
        if failures["everyone"] >= CODE_FAILURES_PER_MINUTE:
            return Redemption(Redeemed.BUSY)
        if await self.executor.fetchval(_REDEEM, code_hash=code_hash) is None:
            await self.executor.execute(_WRONG, user_id=user_id)
            return Redemption(Redeemed.WRONG)
        await self.decide(user_id, "allowed", action="allowed", by_user_id=None, detail="invite code")
        return Redemption(Redeemed.LET_IN)

    async def hold(self, chat_id: int, worker: str, held_for: str, held_until: datetime | None) -> bool | None:
        """Hold the chat (its messages stay stored, unanswered) and hand its lease back; True when
        it was not held for this reason before (the user is to be told), None when another worker
        holds the chat now."""
        newly = await self.executor.fetchval(
            _HOLD, chat_id=chat_id, worker=worker, held_for=held_for, held_until=held_until
        )
        return None if newly is None else bool(newly)

    async def ask(self, user_id: int) -> bool:
        """Mark a user as waiting for approval; True the first time (the operators are to be asked)."""
        return await self.executor.fetchval(_ASK, user_id=user_id) is not None

    async def pending(self, limit: int = 50) -> list[Waiting]:
        return [read_row(Waiting, row) for row in await self.executor.fetch(_PENDING, limit=limit)]

    async def admit(self, user_id: int, per_minute: int) -> datetime | None:
        """Let a newcomer's first message through if the pace allows (in the caller's transaction);
        None when admitted, else when the next newcomer may be."""
        await self.executor.execute(_LOCK_ADMISSIONS)
        row = await self.executor.fetchrow(_ADMIT, user_id=user_id, per_minute=per_minute)
        assert row is not None
        next_at: datetime | None = row["next_at"]
        return None if row["admitted"] else next_at

    async def usage(self, user_id: int, chat_id: int, default_tz: str) -> Usage:
        row = await self.executor.fetchrow(_USAGE, user_id=user_id, chat_id=chat_id, default_tz=default_tz)
        assert row is not None
        return read_row(Usage, row)

    async def decisions(self, limit: int = 50) -> list[Decision]:
        return [read_row(Decision, row) for row in await self.executor.fetch(_DECISIONS, limit=limit)]


def _shown(limit: int | None) -> str:
    return "default" if limit is None else str(limit)
