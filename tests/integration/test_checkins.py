"""Check-ins through the real services and PostgreSQL: due rules, caps, quiet hours, exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.emulators.tgi import TGIEmulator
from app.services.friend import Friend
from scheduler.runner import Job, running
from scheduler.timing import CheckinPolicy, QuietHours
from storage.database import Database, connect
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend
from tests.postgres import fetch as _rows
from tests.postgres import plain_dsn
from tests.waiting import until

NEVER_QUIET = QuietHours(0, 0)
BREAK = timedelta(seconds=0.6)


def _service(
    database: Database,
    tgi: TGIEmulator,
    worker: str = "w1",
    *,
    lease: timedelta = timedelta(seconds=30),
    batch: int = 50,
    **policy: object,
) -> Friend:
    friend = build_friend(
        database,
        tgi,
        worker=worker,
        checkin_lease=lease,
        policy=CheckinPolicy(**{"after": BREAK, "quiet_hours": NEVER_QUIET, "jitter": 0.0, **policy}),  # type: ignore[arg-type]
    )
    friend.checkins.batch = batch
    return friend


async def _close(service: Friend) -> None:
    await service.background.stop(0)
    await service.model.close()


async def _break_over(database_url: str) -> None:
    """Until a break has passed since every chat's last activity (its message, or its last check-in)."""

    async def over() -> bool:
        rows = await _rows(
            database_url,
            "SELECT bool_and(now() >= greatest(last_user_message_at, last_checkin_at) + $1::interval) FROM conversations",
            BREAK,
        )
        return bool(rows[0][0])

    await until(over, what="a break since the last activity")


async def _say(service: Friend, chat: int, text: str, outbox: RecordingOutbox) -> None:
    await service.handle_text(chat, UserInfo(user_id=chat), text, outbox)


async def test_one_checkin_after_a_break_and_a_second_only_after_another(
    db, tgi: TGIEmulator, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    service = _service(db, tgi)
    checkins = service.checkins
    outbox = RecordingOutbox(db)
    await _say(service, 7, "I have a big exam on Friday", outbox)
    assert (await checkins.sweep(outbox)).sent == 0, "no check-in before the break"
    await _break_over(database_url)
    assert (await checkins.sweep(outbox)).sent == 1
    assert (await checkins.sweep(outbox)).sent == 0, "not twice for one break"
    await _break_over(database_url)
    assert (await checkins.sweep(outbox)).sent == 1
    await _break_over(database_url)
    assert (await checkins.sweep(outbox)).sent == 0, "CHECKIN_MAX_UNANSWERED (2) reached"
    overview = (await _rows(database_url, "SELECT checkins_unanswered, last_checkin_at FROM conversation_overview"))[0]
    assert overview["checkins_unanswered"] == 2 and overview["last_checkin_at"] is not None
    kinds = await _rows(database_url, "SELECT kind FROM message_log WHERE kind = 'checkin'")
    assert len(kinds) == 2
    prompt = tgi.chat_requests()[-1]["messages"]
    assert prompt[-1]["content"] == service.persona.prompts.checkin
    assert "big exam" in " ".join(m["content"] for m in prompt), "the check-in knows what was said before"
    await _say(service, 7, "the exam went fine!", outbox)
    overview = (await _rows(database_url, "SELECT checkins_unanswered FROM conversation_overview"))[0]
    assert overview["checkins_unanswered"] == 0, "a reply resets the count"
    await _close(service)


async def test_no_checkin_in_quiet_hours_it_waits_for_the_morning(db, tgi: TGIEmulator, database_url: str) -> None:  # type: ignore[no-untyped-def]
    hour = datetime.now(UTC).hour
    service = _service(db, tgi, quiet_hours=QuietHours(hour, (hour + 2) % 24))
    outbox = RecordingOutbox(db)
    await _say(service, 8, "good night", outbox)
    await _break_over(database_url)
    report = await service.checkins.sweep(outbox)
    assert (report.sent, report.postponed) == (0, 1)
    planned = (await _rows(database_url, "SELECT next_checkin_at FROM conversations"))[0][0]
    assert planned >= datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2) - timedelta(
        seconds=1
    )
    assert len(tgi.chat_requests()) == 1, "quiet hours are checked before any model call"
    await _close(service)


async def test_checkins_off_and_a_block_stop_them(db, tgi: TGIEmulator, database_url: str) -> None:  # type: ignore[no-untyped-def]
    service = _service(db, tgi)
    checkins = service.checkins
    outbox = RecordingOutbox(db)
    await _say(service, 9, "hi", outbox)
    commands = service.commands
    async with commands.handling(9, UserInfo(user_id=9)) as unit:
        assert unit is not None
        await commands.set_checkins(unit, False)
    await _say(service, 10, "hello", outbox)
    outbox.blocked.add(10)
    delivered = len(outbox.sent)
    await _break_over(database_url)
    await checkins.sweep(outbox)
    assert len(outbox.sent) == delivered, "nothing reaches chat 9 (off) or chat 10 (blocked)"
    assert (await _rows(database_url, "SELECT active FROM conversations WHERE chat_id = 10"))[0][0] is False
    await _break_over(database_url)
    assert (await checkins.sweep(outbox)).claimed == 0, "a blocked chat is never claimed again"
    await _close(service)


async def test_three_workers_send_each_checkin_exactly_once(database_url: str, tgi: TGIEmulator) -> None:
    databases = [await connect(database_url) for _ in range(3)]
    # One check-in per chat is allowed, so any second one would be a duplicate.
    services = [
        _service(database, tgi, worker=f"w{n}", batch=7, max_unanswered=1) for n, database in enumerate(databases)
    ]
    outbox = RecordingOutbox(databases[0])
    chats = list(range(100, 160))
    for chat in chats:
        await services[0].receive(chat, UserInfo(user_id=chat), "hello there")
    await _break_over(database_url)
    tgi.latency = 0.01
    workers = [service.checkins for service in services]
    for _ in range(6):
        await asyncio.gather(*(worker.sweep(outbox) for worker in workers))
    per_chat = Counter(chat for chat, _ in outbox.sent)
    assert set(per_chat) == set(chats) and set(per_chat.values()) == {1}
    claimed_by = await _rows(database_url, "SELECT claimed_by, count(*) FROM checkins WHERE status = 'sent' GROUP BY 1")
    assert sum(r[1] for r in claimed_by) == len(chats) and len(claimed_by) > 1, "the work was shared"
    for service, database in zip(services, databases, strict=True):
        await _close(service)
        await database.close()


@pytest.mark.parametrize("state", ["close"])
async def test_the_sweep_cools_long_silent_close_chats(db, tgi: TGIEmulator, database_url: str, state: str) -> None:  # type: ignore[no-untyped-def]
    service = _service(db, tgi)
    await _say(service, 11, "hello", RecordingOutbox(db))
    connection = await asyncpg.connect(plain_dsn(database_url))
    await connection.execute(
        f"UPDATE conversations SET state = '{state}', last_user_message_at = now() - interval '15 days'"
    )
    await connection.close()
    report = await service.checkins.sweep(RecordingOutbox(db))
    assert report.cooled == 1
    log = await _rows(database_url, "SELECT trigger, to_state FROM state_transition_log ORDER BY id DESC LIMIT 1")
    assert tuple(log[0]) == ("cooldown", "warming")
    await _close(service)


async def test_a_stopping_worker_hands_its_claims_to_another_at_once(db, tgi: TGIEmulator, database_url: str) -> None:  # type: ignore[no-untyped-def]
    leaving = _service(db, tgi, worker="leaving", lease=timedelta(minutes=10))
    staying = _service(db, tgi, worker="staying")
    outbox = RecordingOutbox(db)
    for chat in (31, 32, 33):
        await _say(leaving, chat, "a long week ahead", outbox)
    await _break_over(database_url)
    tgi.latency = 3.0  # the leaving worker is mid-way through writing when it is told to stop
    sweep = Job("checkin_sweep", timedelta(seconds=60), lambda: leaving.checkins.sweep(outbox))
    async with running([sweep]) as periodic:
        await until(lambda: _rows(database_url, "SELECT 1 FROM checkins WHERE status = 'claimed'"), what="a claim")
        await periodic.stop(0.2)
    await leaving.checkins.release_claims()
    statuses = Counter(r["status"] for r in await _rows(database_url, "SELECT status FROM checkins"))
    assert statuses == {"released": 3}, statuses
    tgi.latency = 0.0
    report = await staying.checkins.sweep(outbox)  # not ten minutes later: now
    assert report.sent == 3
    # The leaving worker's writes were cut short; had any finished after all, it must not be sent.
    await until(lambda: tgi.in_flight == 0, what="the model server to answer everything it was asked")
    checkins = [text for chat, text in outbox.sent if chat in (31, 32, 33)]
    assert len(checkins) == 3 + 3, checkins  # three replies, three check-ins, nothing twice
    await _close(leaving)
    await _close(staying)
