"""A friend who follows up, through the real `aifriend run` beside an `aifriend scheduler`: a reminder
at the asked minute, a plan asked about once after it, none after /checkins off or when the user
already talked about it, /reminders with its cancel buttons, and /forget."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot
from tests.postgres import fetch
from tests.waiting import START_UP, held_within, until
from tests.zones import midday_offset, zone_springing_forward

SWEEPS = {"CHECKIN_SWEEP_EVERY": "1s", "CHECKIN_AFTER": "24h", "QUIET_HOURS": "00-00", "FOLLOWUP_DELAY": "20s"}


@asynccontextmanager
async def _second_scheduler(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, log: Path
) -> AsyncIterator[None]:
    env = {
        **os.environ,
        **SWEEPS,
        "BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TGI_URL": tgi.url,
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
    }
    with open(log, "wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "scheduler", env=env, stdout=out, stderr=out, cwd=log.parent
        )
    try:
        await until(lambda: "scheduler_started" in log.read_text(errors="replace"), within=START_UP)
        yield
    finally:
        process.terminate()
        await process.wait()


async def _after(when: datetime, action: Callable[[], object]) -> None:
    await until(lambda: datetime.now(UTC) > when, within=120, what=f"{when:%H:%M:%S}")
    action()


def _texts(telegram: TelegramEmulator, chat: int) -> list[str]:
    return [str(m.get("text", "")) for m in telegram.sent[chat]]


async def _status(database_url: str, chat: int) -> list[tuple[str, str]]:
    rows = await fetch(database_url, "SELECT kind, status FROM followup_schedule WHERE chat_id = $1 ORDER BY id", chat)
    return [tuple(row) for row in rows]


async def test_a_reminder_and_a_plan_are_each_written_once_by_two_schedulers(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    reminded, planner, quiet, talker = 8101, 8102, 8103, 8104
    event = (datetime.now(UTC) + timedelta(seconds=75)).replace(second=0, microsecond=0)
    day = "today" if event.date() == datetime.now(UTC).date() else "tomorrow"
    plan = f"my exam is {day} at {event:%H:%M}, wish me luck"
    async with (
        running_bot(telegram, tgi, database_url, tmp_path, **SWEEPS),
        _second_scheduler(telegram, tgi, database_url, tmp_path / "scheduler.log"),
    ):
        asked_at = datetime.now(UTC)
        telegram.user_sends(reminded, "remind me in 1 minute to drink some water")
        confirmation = await telegram.wait_for(reminded, 1)
        # "at 14:05" today; "on Sunday 00:00" when the minute is past midnight (the suite runs at any hour)
        assert re.fullmatch(
            r"Okay, I'll remind you (at|on \w+) \d\d:\d\d: drink some water\.", confirmation[0]["text"]
        ), confirmation[0]["text"]
        for chat in (planner, quiet, talker):
            telegram.user_sends(chat, plan)
        await until(lambda: all(telegram.sent[c] for c in (planner, quiet, talker)), what="the plans answered")
        telegram.user_sends(quiet, "/checkins off")
        await telegram.wait_for(quiet, 2)
        # The talker mentions the exam just after it, well before FOLLOWUP_DELAY is over.
        talked = asyncio.create_task(_after(event, lambda: telegram.user_sends(talker, "the exam went fine, thanks!")))

        reminder = (await telegram.wait_for(reminded, 3, patience=150))[2]
        assert "drink some water" in reminder["text"] and reminder["text"].startswith("\u23f0")
        assert timedelta(seconds=59) <= datetime.now(UTC) - asked_at <= timedelta(seconds=80), "a minute later"

        await talked
        followup = (await telegram.wait_for(planner, 2, patience=60))[1]["text"]
        assert "how it went" in followup and plan in followup, "written by the model with the plan in its prompt"
        assert not await held_within(lambda: len(telegram.sent[planner]) > 2 or len(telegram.sent[reminded]) > 3, 4.0)
    assert len(_texts(telegram, quiet)) == 2, "the plan's reply and the /checkins answer, no follow-up"
    assert len(_texts(telegram, talker)) == 2, "two replies, no follow-up"
    assert await _status(database_url, reminded) == [("reminder", "sent")]
    assert await _status(database_url, planner) == [("plan", "sent")]
    assert await _status(database_url, quiet) == [("plan", "skipped")]
    assert await _status(database_url, talker) == [("plan", "skipped")]
    kinds = await fetch(
        database_url, "SELECT kind FROM message_log WHERE chat_id IN ($1, $2) AND role = 'assistant'", reminded, planner
    )
    assert sorted(row[0] for row in kinds).count("reminder") == 1 and [row[0] for row in kinds].count("followup") == 1


async def test_reminders_lists_what_is_coming_and_cancels_it_and_forget_removes_it(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user, forgetful = 8201, 8202
    async with running_bot(telegram, tgi, database_url, tmp_path, **SWEEPS):
        telegram.user_sends(user, "remind me tomorrow at 9 to call mom")
        await until(lambda: len(telegram.sent[user]) >= 2, within=START_UP, what="the confirmation and the reply")
        telegram.user_sends(user, "my job interview is on Friday at 10am")  # after: not merged into one reply
        await telegram.wait_for(user, 3)
        telegram.user_sends(user, "/reminders")
        listing = (await telegram.wait_for(user, 4))[-1]
        assert "call mom" in listing["text"] and "job interview" in listing["text"]
        buttons = listing["reply_markup"]["inline_keyboard"]
        assert [row[0]["text"] for row in buttons] == ["Cancel 1", "Cancel 2"]
        telegram.user_presses(user, listing["message_id"], buttons[0][0]["callback_data"])
        cancelled = (await telegram.wait_for(user, 5))[-1]["text"]
        assert cancelled == "Cancelled: call mom"
        telegram.user_sends(user, "/memory")
        memory = (await telegram.wait_for(user, 6))[-1]["text"]
        assert "job interview" in memory and "call mom" not in memory

        telegram.user_sends(forgetful, "remind me in 10 minutes to stretch")
        await telegram.wait_for(forgetful, 2)
        telegram.user_sends(forgetful, "/forget")
        question = (await telegram.wait_for(forgetful, 3))[-1]
        telegram.user_presses(forgetful, question["message_id"], "forget:yes")
        await until(lambda: _none_left(database_url, forgetful), what="the reminder gone with the user")
    assert await _status(database_url, user) == [("reminder", "cancelled"), ("plan", "pending")]


async def _none_left(database_url: str, chat: int) -> bool:
    rows = await fetch(database_url, "SELECT count(*) FROM followups WHERE chat_id = $1", chat)
    return bool(rows[0][0] == 0)


async def test_a_reminder_fires_once_at_the_asked_minute_across_a_daylight_saving_change(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    """The user's zone springs forward an hour 45 s into the test (the machine's clock is left
    alone: the zone's rules are the test's, on the bot's PYTHONTZPATH). "Remind me at HH:MM", a local
    time after the change, must fire at that minute: not an hour early or late, and once."""
    user = 8301
    now = datetime.now(UTC)
    standard = midday_offset(now)  # local mornings only: "today" stays today, whatever the UTC hour
    target = (now + timedelta(seconds=150)).replace(second=0, microsecond=0)  # a whole minute, after the change
    local = target + timedelta(hours=standard + 1)  # the zone is an hour further ahead by then
    zones = zone_springing_forward(tmp_path / "zones", "Atlantic/Reykjavik", now + timedelta(seconds=45), standard)
    async with running_bot(telegram, tgi, database_url, tmp_path, PYTHONTZPATH=str(zones), **SWEEPS):
        telegram.user_sends(user, "/timezone Atlantic/Reykjavik")
        await telegram.wait_for(user, 1, patience=START_UP)
        telegram.user_sends(user, f"remind me at {local:%H:%M} to water the plants")
        confirmation = (await telegram.wait_for(user, 2))[1]["text"]
        assert confirmation == f"Okay, I'll remind you at {local:%H:%M}: water the plants.", confirmation
        reminder = (await telegram.wait_for(user, 4, patience=240))[-1]
        fired = datetime.now(UTC)
        assert "water the plants" in reminder["text"] and reminder["text"].startswith("\u23f0")
        assert target - timedelta(seconds=2) <= fired <= target + timedelta(seconds=30), (fired, target)
        assert not await held_within(lambda: len(telegram.sent[user]) > 4, 4.0), "once"
    assert await _status(database_url, user) == [("reminder", "sent")]
