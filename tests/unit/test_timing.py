"""The pure timing rules of check-ins, as tables: when one falls due, and when the night moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.runner import claim_lease
from scheduler.timing import CheckinPolicy, QuietHours, next_checkin, postpone_for_quiet_hours

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = CheckinPolicy(after=timedelta(hours=24), max_unanswered=2, jitter=0.1)


@pytest.mark.parametrize(
    ("enabled", "active", "unanswered", "spread", "expected"),
    [
        (True, True, 0, 0.0, NOON + timedelta(hours=24)),
        (True, True, 1, 0.0, NOON + timedelta(hours=24)),
        (True, True, 2, 0.0, None),  # CHECKIN_MAX_UNANSWERED reached
        (True, True, 5, 0.0, None),
        (False, True, 0, 0.0, None),  # /checkins off
        (True, False, 0, 0.0, None),  # blocked: the chat is inactive
        (True, True, 0, 0.5, NOON + timedelta(hours=24, minutes=5)),  # jitter: a tenth of a day, at most 10 min
        (True, True, 0, 0.999, NOON + timedelta(hours=24, seconds=599.4)),
    ],
)
def test_when_the_next_checkin_falls_due(
    enabled: bool, active: bool, unanswered: int, spread: float, expected: datetime | None
) -> None:
    due = next_checkin(
        last_activity=NOON, policy=DAY, unanswered=unanswered, enabled=enabled, active=active, spread=spread
    )
    assert due == expected


@pytest.mark.parametrize(
    ("after", "spread", "jitter_at_most"),
    [
        (timedelta(seconds=30), 1.0, timedelta(seconds=3)),  # a tenth of a short break
        (timedelta(hours=2), 1.0, timedelta(minutes=10)),  # capped at ten minutes
        (timedelta(days=7), 1.0, timedelta(minutes=10)),
    ],
)
def test_the_jitter_is_a_tenth_of_the_break_and_never_more_than_ten_minutes(
    after: timedelta, spread: float, jitter_at_most: timedelta
) -> None:
    policy = CheckinPolicy(after=after)
    due = next_checkin(last_activity=NOON, policy=policy, unanswered=0, enabled=True, active=True, spread=spread)
    assert due is not None and due - (NOON + after) == jitter_at_most


@pytest.mark.parametrize(
    ("hours", "local", "quiet"),
    [
        ("22-08", "21:59", False),
        ("22-08", "22:00", True),
        ("22-08", "03:00", True),
        ("22-08", "07:59", True),
        ("22-08", "08:00", False),
        ("01-05", "00:30", False),
        ("01-05", "01:00", True),
        ("01-05", "05:00", False),
        ("00-00", "00:00", False),  # an empty range: never quiet
        ("00-00", "13:00", False),
        ("23-00", "23:30", True),
        ("23-00", "00:00", False),
    ],
)
def test_quiet_hours_in_local_time(hours: str, local: str, quiet: bool) -> None:
    hour, minute = (int(part) for part in local.split(":"))
    moment = datetime(2026, 6, 1, hour, minute, tzinfo=ZoneInfo("Europe/Berlin"))
    assert QuietHours.parse(hours).contains(moment) is quiet


@pytest.mark.parametrize(
    ("due", "zone", "spread", "expected"),
    [
        # 12:00 UTC is 14:00 in Berlin (summer): not night, nothing moves
        (NOON, "Europe/Berlin", 0.0, None),
        # 21:30 UTC is 23:30 in Berlin: waits for 08:00 there, 06:00 UTC, plus up to 15 min of jitter
        (datetime(2026, 6, 1, 21, 30, tzinfo=UTC), "Europe/Berlin", 0.0, datetime(2026, 6, 2, 6, 0, tzinfo=UTC)),
        (datetime(2026, 6, 1, 21, 30, tzinfo=UTC), "Europe/Berlin", 0.5, datetime(2026, 6, 2, 6, 7, 30, tzinfo=UTC)),
        # 03:00 UTC is 05:00 in Berlin: the same morning
        (datetime(2026, 6, 2, 3, 0, tzinfo=UTC), "Europe/Berlin", 0.0, datetime(2026, 6, 2, 6, 0, tzinfo=UTC)),
        # 03:00 UTC is 23:00 the day before in New York: the next morning there, 12:00 UTC
        (datetime(2026, 6, 2, 3, 0, tzinfo=UTC), "America/New_York", 0.0, datetime(2026, 6, 2, 12, 0, tzinfo=UTC)),
        # 03:00 UTC is 15:00 in Auckland: not night
        (datetime(2026, 6, 2, 3, 0, tzinfo=UTC), "Pacific/Auckland", 0.0, None),
        # the night the clocks go back in Berlin (25 October 2026): 08:00 local is 07:00 UTC
        (datetime(2026, 10, 24, 22, 0, tzinfo=UTC), "Europe/Berlin", 0.0, datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),
    ],
)
def test_a_checkin_due_at_night_waits_for_the_users_morning(
    due: datetime, zone: str, spread: float, expected: datetime | None
) -> None:
    assert postpone_for_quiet_hours(due, ZoneInfo(zone), QuietHours(22, 8), spread) == expected


@pytest.mark.parametrize(
    ("every", "lease"),
    [
        (timedelta(seconds=1), timedelta(seconds=30)),  # never under half a minute: a batch must fit
        (timedelta(seconds=60), timedelta(minutes=4)),  # four sweeps
        (timedelta(minutes=5), timedelta(minutes=20)),
    ],
)
def test_a_checkin_claim_outlives_several_sweeps(every: timedelta, lease: timedelta) -> None:
    assert claim_lease(every) == lease
