"""The database, the model server and Telegram going away, at start-up and mid-run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot, until_idle
from tests.faults.proxy import Proxy
from tests.faults.users import chatter, settle
from tests.postgres import fetch
from tests.waiting import START_UP, until

CHATS = range(6001, 6006)


async def test_postgres_going_away_mid_run_loses_nothing_and_the_bot_stays_up(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    proxy = Proxy.to_database(database_url)
    await proxy.up()
    sent: dict[int, int] = {}
    async with running_bot(telegram, tgi, proxy.database_url(database_url), tmp_path, "--no-scheduler") as bot:
        telegram.user_sends(CHATS[0], "before anything")
        await telegram.wait_for(CHATS[0], 1, patience=60)
        telegram.sent[CHATS[0]].clear()
        users = asyncio.create_task(chatter(telegram, CHATS, per_chat=10, every=1.2, sent=sent))
        await asyncio.sleep(3)  # the users talk for a while: the scenario's timing, not a wait
        await proxy.down()  # every connection reset, new ones refused: a restart, as clients see it
        await asyncio.sleep(6)  # the outage lasts this long: the fault's input
        assert bot.process.returncode is None, "the bot waits for its database, it does not exit"
        await proxy.up()
        await users
        result, _ = await settle(telegram, sent, patience=60)
        await until_idle(telegram, database_url)
        result, _ = await settle(telegram, sent, patience=1)
        assert bot.process.returncode is None
    await proxy.down()
    assert (result.lost, result.duplicates, result.order_violations) == (0, 0, 0), result.line()
    stored = await fetch(database_url, "SELECT count(*) FROM messages WHERE role = 'user' AND kind = 'text'")
    assert stored[0][0] == result.sent + 1, "each message stored once (and the warm-up)"
    assert "update_waits_for_database" in bot.log() or "maintenance_failed" in bot.log()


async def test_a_database_unreachable_at_start_is_waited_for(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    proxy = Proxy.to_database(database_url)  # not up yet: connections are refused
    async with running_bot(telegram, tgi, proxy.database_url(database_url), tmp_path, "--no-scheduler") as bot:
        await until(lambda: "database_unreachable" in bot.log(), within=START_UP)
        assert "database_unreachable" in bot.log() and bot.process.returncode is None
        await proxy.up()
        telegram.user_sends(CHATS[0], "are you up now?")
        reply = await telegram.wait_for(CHATS[0], 1, patience=60)
    await proxy.down()
    assert "are you up now?" in reply[0]["text"]
    assert "Traceback" not in bot.log()


async def test_telegram_unreachable_at_start_is_retried_until_it_answers(
    tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    telegram = TelegramEmulator()
    proxy_port = Proxy(None, None).port  # a free port with nothing on it yet
    telegram.url = f"http://127.0.0.1:{proxy_port}"
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler") as bot:
        await until(lambda: "telegram_unreachable" in bot.log(), within=START_UP)
        assert "telegram_unreachable" in bot.log() and bot.process.returncode is None
        await telegram.start(port=proxy_port)
        telegram.user_sends(CHATS[1], "hello once Telegram is back")
        reply = await telegram.wait_for(CHATS[1], 1, patience=60)
    await telegram.stop()
    assert "Telegram is back" in reply[0]["text"]
    assert telegram.token not in bot.log() and "Traceback" not in bot.log()


async def test_a_hung_model_gets_the_fallback_within_llm_timeout_and_a_dead_one_too(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler", LLM_TIMEOUT="2s"):
        telegram.user_sends(CHATS[2], "warm up")
        await telegram.wait_for(CHATS[2], 1, patience=60)
        tgi.latency = 600.0  # accepts, never answers
        started = time.monotonic()
        telegram.user_sends(CHATS[2], "are you thinking?")
        replies = await telegram.wait_for(CHATS[2], 2, patience=30)
        waited = time.monotonic() - started
        await tgi.stop()  # and now nobody listens at all
        telegram.user_sends(CHATS[2], "hello? anyone?")
        replies = await telegram.wait_for(CHATS[2], 3, patience=30)
    fallback = "my head is a bit foggy"
    assert fallback in replies[1]["text"] and fallback in replies[2]["text"]
    assert waited < 5.0, f"the user waited {waited:.1f} s for the fallback"
    kinds = await fetch(database_url, "SELECT kind FROM messages WHERE role = 'assistant' ORDER BY id")
    assert [k[0] for k in kinds] == ["reply", "fallback", "fallback"]
