"""Whether a chat is answered now: who may talk (ACCESS_MODE and operators' word) and how much
(replies per minute, tokens per local day). Pure: the responder reads the user's standing with
the chat and asks here before it calls the model.

A chat that may not be answered is *held*: its messages stay stored and unanswered, the user is
told once why (and until when), and when the hold ends (a limit's window passes, an operator lets
the user in) everything kept meanwhile is answered in one reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from storage.rows import ConversationRow, Standing

AccessMode = Literal["open", "allowlist", "invite", "approval"]
ACCESS_MODES: tuple[AccessMode, ...] = ("open", "allowlist", "invite", "approval")

# Why a chat is held. The access reasons last until an operator (or a code) lets the user in; the
# limits end by themselves; "blocked" is never told.
ACCESS_HOLDS = ("allowlist", "invite", "approval", "refused", "blocked")
LIMIT_HOLDS = ("replies", "tokens", "newcomers")


@dataclass(frozen=True, slots=True)
class AccessRules:
    mode: AccessMode = "open"
    admins: frozenset[int] = frozenset()
    replies_per_minute: int = 0  # the settings' defaults (0: no limit); users may have their own
    tokens_per_day: int = 0
    newcomers_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str  # one of ACCESS_HOLDS or LIMIT_HOLDS
    until: datetime | None  # None: until let in


def hold_for(
    row: ConversationRow, standing: Standing, rules: AccessRules, now: datetime, zone: ZoneInfo
) -> Hold | None:
    """Why this chat may not be answered now, or None. Admins may always talk."""
    if row.user_id in rules.admins:
        return None
    access = access_hold(standing.access, rules.mode)
    if access is not None:
        return Hold(access, None)
    if standing.replies_limit > 0 and standing.replies_in_window >= standing.replies_limit:
        started = standing.window_started or now
        return Hold("replies", started + timedelta(seconds=60))
    if standing.tokens_limit > 0 and standing.tokens_today >= standing.tokens_limit:
        return Hold("tokens", next_midnight(now, zone))
    return None


def access_hold(access: str | None, mode: AccessMode) -> str | None:
    """Why a user may not talk at all, or None: operators' word first, then the mode."""
    if access == "blocked" or access == "refused":
        return access
    if access == "allowed" or mode == "open":
        return None
    return mode


def next_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    """When the user's next local day starts."""
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=zone)


def is_newcomer(row: ConversationRow) -> bool:
    """A user none of whose messages has gone to the model yet."""
    return row.admitted_at is None
