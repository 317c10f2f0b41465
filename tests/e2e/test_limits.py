"""How much: replies per minute shared by two bot processes, model tokens per local day, an
operator's own limit for one user, and /usage, through real `aifriend run` processes."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import free_port, running_bot, until_idle, webhook_replica
from tests.e2e.roundrobin import RoundRobin
from tests.e2e.test_access import ADMIN, _prompt_users, _said, _user_messages
from tests.postgres import fetch
from tests.waiting import START_UP, held_within, until


async def test_two_bot_processes_share_one_users_reply_limit_and_answer_what_waited_in_one_reply(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    """Updates alternate between two webhook replicas: the limit holds across them, the user is
    told once, and after the minute the messages kept meanwhile get one reply."""
    user = 6101
    ports = [free_port(), free_port()]
    balancer = RoundRobin([f"http://127.0.0.1:{p}" for p in ports])
    hook = await balancer.start() + "/telegram/hook"
    limit = {"LIMIT_REPLIES_PER_MINUTE": "3"}

    try:
        async with (
            running_bot(telegram, tgi, database_url, tmp_path, **webhook_replica(hook, ports[0], **limit)),
            running_bot(telegram, tgi, database_url, tmp_path, **webhook_replica(hook, ports[1], **limit)),
        ):
            for n in range(1, 4):
                [reply] = await _said(telegram, user, f"message {n}")
                assert reply.startswith("[emulated model]"), reply
            [notice] = await _said(telegram, user, "message 4")
            assert "catch my breath" in notice
            told_at = datetime.now(ZoneInfo("UTC"))
            for n in (5, 6):
                telegram.user_sends(user, f"message {n}")
            await until(lambda: _user_messages(database_url, user, 6), within=START_UP, what="all six stored")
            assert not await held_within(lambda: len(telegram.sent[user]) > 4, 3.0), "told once, nothing more"
            assert all(served > 0 for served in balancer.served.values()), "both replicas took messages"
            [usage] = await _said(telegram, user, "/usage")
            assert "3 in the last minute, up to 3 a minute" in usage

            await telegram.wait_for(user, 6, patience=90)
            answered_at = datetime.now(ZoneInfo("UTC"))
            await until_idle(telegram, database_url)
    finally:
        await balancer.stop()
    texts = [m.get("text", "") for m in telegram.sent[user]]
    assert len(texts) == 6, texts
    assert texts[5].startswith("[emulated model]")
    assert _prompt_users(tgi)[-3:] == ["message 4", "message 5", "message 6"], "the kept messages, together"
    assert answered_at - told_at >= timedelta(seconds=50), "not before the minute is over"
    replies = await fetch(
        database_url, "SELECT count(*) FROM messages WHERE chat_id = $1 AND kind IN ('reply', 'fallback')", user
    )
    assert replies[0][0] == 4


async def test_the_daily_token_limit_ends_at_the_users_midnight_and_an_operator_can_raise_it(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 6201
    async with running_bot(telegram, tgi, database_url, tmp_path, LIMIT_TOKENS_PER_DAY="50", ADMIN_IDS=str(ADMIN)):
        await _said(telegram, user, "/timezone Asia/Tokyo")
        [reply] = await _said(telegram, user, "tell me something nice about mornings")
        assert reply.startswith("[emulated model]")
        [notice] = await _said(telegram, user, "and about evenings?")
        assert "used up my words" in notice and "00:00" in notice, notice
        held = await fetch(database_url, "SELECT held_for, held_until FROM conversations WHERE chat_id = $1", user)
        tokyo = ZoneInfo("Asia/Tokyo")
        midnight = datetime.combine(datetime.now(tokyo).date() + timedelta(days=1), datetime.min.time(), tokyo)
        assert held[0]["held_for"] == "tokens" and held[0]["held_until"] == midnight
        used = await fetch(database_url, "SELECT day, tokens FROM usage_days WHERE user_id = $1", user)
        assert used[0]["day"] == datetime.now(tokyo).date() and used[0]["tokens"] > 50, "counted in Tokyo's day"
        telegram.user_sends(user, "and nights?")
        await until(lambda: _user_messages(database_url, user, 3), what="the third message stored")
        [usage] = await _said(telegram, user, "/usage")
        assert "limit 50" in usage and "Asia/Tokyo" in usage

        [answer] = await _said(telegram, ADMIN, f"/limit {user} - 0")
        assert "no limit" in answer
        reply = (await telegram.wait_for(user, 5))[-1]["text"]
        assert reply.startswith("[emulated model]")
        assert _prompt_users(tgi)[-2:] == ["and about evenings?", "and nights?"]
        await until_idle(telegram, database_url)
    log = await fetch(database_url, "SELECT user_id, action, by_user_id, detail FROM access_log")
    assert [tuple(r) for r in log] == [(user, "limit_set", ADMIN, "replies_per_minute=default tokens_per_day=0")]
