"""Pure timing rules for check-ins: quiet hours in the user's own zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_QUIET = re.compile(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours ``[start, end)`` with no check-ins; wraps midnight when start > end."""

    start: int
    end: int

    @classmethod
    def parse(cls, value: object) -> QuietHours:
        if isinstance(value, QuietHours):
            return value
        match = _QUIET.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not an hour range; write it like 22-08")
        start, end = (int(part) for part in match.groups())
        if not (0 <= start <= 23 and 0 <= end <= 23):
            raise ValueError(f"{value!r} has an hour outside 0-23; write it like 22-08")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:02d}-{self.end:02d}"

    def contains(self, local: datetime) -> bool:
        """Whether a local wall-clock time falls in the quiet hours."""
        hour = local.hour
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end

    def end_after(self, local: datetime) -> datetime:
        """The first moment at or after ``local`` that is outside the quiet hours."""
        if not self.contains(local):
            return local
        morning = datetime.combine(local.date(), time(self.end), tzinfo=local.tzinfo)
        if morning <= local:
            morning += timedelta(days=1)
        return morning


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckinPolicy:
    """When check-ins fall due: the operator's settings as one value."""

    after: timedelta = timedelta(hours=24)
    max_unanswered: int = 2
    quiet_hours: QuietHours = QuietHours(22, 8)
    default_tz: str = "UTC"
    jitter: float = 0.1  # up to this share of `after` (at most ten minutes) is added at random


def next_checkin(
    *, last_activity: datetime, policy: CheckinPolicy, unanswered: int, enabled: bool, active: bool, spread: float
) -> datetime | None:
    """When the next check-in falls due, or None when none may be sent.

    `spread` in [0, 1) picks the jitter, so users who went quiet together are not all
    written to in the same second.
    """
    if not (enabled and active) or unanswered >= policy.max_unanswered:
        return None
    jitter = min(policy.after.total_seconds() * policy.jitter, 600.0) * spread
    return last_activity + policy.after + timedelta(seconds=jitter)


def postpone_for_quiet_hours(due: datetime, zone: ZoneInfo, hours: QuietHours, spread: float) -> datetime | None:
    """If `due` falls in the user's night, the morning it waits for (with some jitter); else None."""
    local = due.astimezone(zone)
    if not hours.contains(local):
        return None
    return hours.end_after(local).astimezone(due.tzinfo) + timedelta(seconds=900 * spread)
