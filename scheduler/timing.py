"""Pure timing rules for check-ins: quiet hours in the user's own zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

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
