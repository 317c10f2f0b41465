"""Plans and reminders read from what users write: the labelled set, and the clock's corners."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from app.plans import find

LABELLED = Path(__file__).resolve().parent.parent / "data" / "plans.tsv"
BERLIN = ZoneInfo("Europe/Berlin")
AS_OF = datetime(2026, 12, 7, 12, 0, tzinfo=BERLIN)  # a Monday, as the set's header says


def _labelled() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in LABELLED.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            language, label, expected, text = line.split("\t")
            rows.append((language, label, expected, text))
    return rows


def test_the_labelled_set_is_read_with_at_least_95_percent_precision() -> None:
    """A plan or reminder counts as found only with the right kind and the right minute: a
    follow-up on a misread date is a false positive."""
    rows = _labelled()
    assert len(rows) >= 300 and {language for language, *_ in rows} == {"en", "de"}
    found = correct = expected = 0
    misses: list[str] = []
    for language, label, when, text in rows:
        got = find(text, now=AS_OF, zone=BERLIN, language=language)
        reading = (got.kind, f"{got.at:%Y-%m-%d %H:%M}") if got else None
        truth = (label, when) if label != "none" else None
        found += reading is not None
        expected += truth is not None
        correct += reading is not None and reading == truth
        if reading != truth:
            misses.append(f"{text!r}: read {reading}, labelled {truth}")
    precision, recall = correct / found, correct / expected
    print(f"plans.tsv: {len(rows)} messages, precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95, misses
    assert recall >= 0.85, misses


def test_a_reminder_in_hours_counts_real_hours_across_the_clock_change() -> None:
    before = datetime(2027, 3, 27, 23, 30, tzinfo=BERLIN)  # the clocks go forward at 02:00
    found = find("remind me in 3 hours to take my pill", now=before, zone=BERLIN)
    assert found is not None and found.at.astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert f"{found.at.astimezone(BERLIN):%H:%M}" == "03:30", (
        "23:30 winter time plus three real hours: 03:30 summer time"
    )


def test_a_reminder_at_a_clock_time_is_that_time_on_the_day_of_the_change() -> None:
    saturday = datetime(2027, 3, 27, 12, 0, tzinfo=BERLIN)
    found = find("remind me tomorrow at 9 to call mom", now=saturday, zone=BERLIN)
    assert found is not None and found.what == "call mom"
    assert found.at == datetime(2027, 3, 28, 9, 0, tzinfo=BERLIN)
    assert found.at.astimezone(UTC) == datetime(2027, 3, 28, 7, 0, tzinfo=UTC), "09:00 summer time"


def test_the_users_zone_decides_what_tomorrow_is() -> None:
    late_in_tokyo = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)  # 01:00 on the 8th in Tokyo
    found = find("my exam is tomorrow at 10", now=late_in_tokyo, zone=ZoneInfo("Asia/Tokyo"))
    assert found is not None and f"{found.at:%Y-%m-%d %H:%M}" == "2026-12-09 10:00"


def test_a_time_already_past_today_is_not_a_plan() -> None:
    evening = datetime(2026, 12, 7, 20, 0, tzinfo=BERLIN)
    assert find("my interview is today at 10am", now=evening, zone=BERLIN) is None
    found = find("remind me at 9 to stretch", now=evening, zone=BERLIN)
    assert found is not None and f"{found.at:%Y-%m-%d %H:%M}" == "2026-12-08 09:00", "09:00 next comes tomorrow"
