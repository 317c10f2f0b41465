"""Who may talk and how much, as pure rules; and the order the fair queue lets requests through."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.services.gate import AccessMode, AccessRules, Hold, hold_for, next_midnight
from app.services.model_queue import FairQueue, Priority
from storage.rows import ConversationRow, Standing

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def _row(user_id: int = 1) -> ConversationRow:
    return ConversationRow(
        chat_id=user_id,
        user_id=user_id,
        state="icebreaker",
        stage_before_repair=None,
        stage_messages=0,
        calm_streak=0,
        user_messages=1,
        bot_messages=0,
        last_user_message_at=None,
        last_bot_message_at=None,
        active=True,
        checkins_enabled=True,
        checkins_unanswered=0,
        last_checkin_at=None,
        next_checkin_at=None,
        reply_lease_until=None,
        reply_lease_owner=None,
        history_since_id=0,
        memory_summary=None,
        summarized_through_id=0,
        prompt_stage="icebreaker",
        timezone=None,
    )


def _standing(
    access: str | None = None, replies: tuple[int, int] = (0, 0), tokens: tuple[int, int] = (0, 0)
) -> Standing:
    return Standing(
        access=access,
        replies_limit=replies[0],
        replies_in_window=replies[1],
        window_started=NOW - timedelta(seconds=20) if replies[1] else None,
        tokens_limit=tokens[0],
        tokens_today=tokens[1],
    )


@pytest.mark.parametrize(
    ("mode", "access", "expected"),
    [
        ("open", None, None),
        ("open", "blocked", "blocked"),
        ("open", "refused", "refused"),
        ("allowlist", None, "allowlist"),
        ("allowlist", "allowed", None),
        ("allowlist", "pending", "allowlist"),
        ("invite", None, "invite"),
        ("invite", "allowed", None),
        ("approval", None, "approval"),
        ("approval", "pending", "approval"),
        ("approval", "allowed", None),
        ("approval", "refused", "refused"),
        ("invite", "blocked", "blocked"),
    ],
)
def test_who_may_talk(mode: AccessMode, access: str | None, expected: str | None) -> None:
    hold = hold_for(_row(), _standing(access), AccessRules(mode=mode), NOW, UTC_ZONE)
    assert (hold.reason if hold else None) == expected
    if hold is not None:
        assert hold.until is None, "an access hold lasts until someone lets the user in"


@pytest.mark.parametrize("mode", ["allowlist", "invite", "approval"])
def test_admins_may_always_talk(mode: AccessMode) -> None:
    rules = AccessRules(mode=mode, admins=frozenset({1}), replies_per_minute=1)
    assert hold_for(_row(1), _standing("blocked", replies=(1, 5)), rules, NOW, UTC_ZONE) is None


@pytest.mark.parametrize(
    ("replies", "tokens", "expected"),
    [
        ((0, 50), (0, 10**9), None),  # no limits at all
        ((20, 19), (1000, 999), None),  # just under both
        ((20, 20), (0, 0), Hold("replies", NOW + timedelta(seconds=40))),  # the oldest of the 20 leaves in 40 s
        ((0, 0), (1000, 1000), Hold("tokens", datetime(2026, 12, 6, tzinfo=UTC))),
        ((3, 3), (10, 50), Hold("replies", NOW + timedelta(seconds=40))),  # the sooner one is told first
    ],
)
def test_how_much(replies: tuple[int, int], tokens: tuple[int, int], expected: Hold | None) -> None:
    assert hold_for(_row(), _standing(replies=replies, tokens=tokens), AccessRules(), NOW, UTC_ZONE) == expected


@pytest.mark.parametrize(
    ("zone", "now", "midnight"),
    [
        ("UTC", "2026-12-05T23:59:00+00:00", "2026-12-06T00:00:00+00:00"),
        ("Asia/Tokyo", "2026-12-05T12:00:00+00:00", "2026-12-06T00:00:00+09:00"),  # 21:00 in Tokyo
        ("Asia/Tokyo", "2026-12-05T16:00:00+00:00", "2026-12-07T00:00:00+09:00"),  # already the 6th there
        ("America/New_York", "2026-03-08T03:00:00+00:00", "2026-03-08T00:00:00-05:00"),  # 22:00 on the 7th
        ("America/New_York", "2026-03-08T12:00:00+00:00", "2026-03-09T00:00:00-04:00"),  # after the clocks moved
    ],
)
def test_the_day_ends_at_the_users_midnight(zone: str, now: str, midnight: str) -> None:
    assert next_midnight(datetime.fromisoformat(now), ZoneInfo(zone)) == datetime.fromisoformat(midnight)


async def test_the_queue_lets_conversations_first_then_newcomers_then_background_each_in_arrival_order() -> None:
    queue = FairQueue(1)
    order: list[str] = []
    release = asyncio.Event()

    async def request(name: str, priority: Priority) -> None:
        async with queue.slot(priority):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(request("first", Priority.NEWCOMER))
    await asyncio.sleep(0)
    waiting = [
        ("summary", Priority.BACKGROUND),
        ("new-1", Priority.NEWCOMER),
        ("talk-1", Priority.CONVERSATION),
        ("new-2", Priority.NEWCOMER),
        ("talk-2", Priority.CONVERSATION),
    ]
    tasks = []
    for name, priority in waiting:
        tasks.append(asyncio.create_task(request(name, priority)))
        await asyncio.sleep(0)
    assert queue.depth == 5
    release.set()
    await asyncio.gather(first, *tasks)
    assert order == ["first", "talk-1", "talk-2", "new-1", "new-2", "summary"]
    assert queue.depth == 0


async def test_a_request_that_gives_up_waiting_leaves_no_slot_taken() -> None:
    queue = FairQueue(1)
    async with queue.slot(Priority.CONVERSATION):
        waiter = asyncio.create_task(_take(queue))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert queue.depth == 0
    await asyncio.wait_for(_take(queue), 1.0)  # the slot is free again


async def _take(queue: FairQueue) -> None:
    async with queue.slot(Priority.CONVERSATION):
        pass
