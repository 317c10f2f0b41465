"""Telegram failing on every kind of send: nothing lost, order kept, no duplicate that could be avoided."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot, until_idle
from tests.faults.users import chatter, settle
from tests.postgres import fetch

CHATS = range(4001, 4011)
FAULT_SECONDS = 20.0


async def test_bot_api_faults_on_sends_lose_nothing_reorder_nothing_and_duplicate_only_the_unknowable(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    sent: dict[int, int] = {}
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler"):
        telegram.user_sends(CHATS[0], "/start")
        await telegram.wait_for(CHATS[0], 1, patience=60)
        telegram.sent[CHATS[0]].clear()
        # 429s, 502s (JSON and a proxy's HTML page), resets before Telegram reads the request,
        # and resets after it accepted the message (only those may honestly arrive twice).
        telegram.chaos(FAULT_SECONDS, rate=0.35)
        users = asyncio.create_task(chatter(telegram, CHATS, per_chat=12, every=FAULT_SECONDS / 12, sent=sent))
        await asyncio.sleep(FAULT_SECONDS / 2)  # half-way through the faults: the scenario's timing
        for chat in CHATS:
            telegram.user_sends(chat, "/help")
        await users
        result, _ = await settle(telegram, sent, patience=60)
        await until_idle(telegram, database_url)
        result, _ = await settle(telegram, sent, patience=1)

    injected = dict(telegram.faults_injected)
    assert sum(injected.values()) >= 20 and len(injected) == 5, injected
    assert result.lost == 0, (result.line(), result.unanswered)
    assert result.order_violations == 0, result.line()
    # A duplicate is allowed only for a send Telegram accepted while its answer was lost.
    ambiguous = Counter(telegram.ambiguous)
    for chat in CHATS:
        texts = Counter(m.get("text") for m in telegram.sent[chat])
        for text, times in texts.items():
            assert times - 1 <= ambiguous[(chat, text)], f"chat {chat} got {text!r} {times} times"
        helps = sum(1 for m in telegram.sent[chat] if "/help - this list" in (m.get("text") or ""))
        assert 1 <= helps <= 1 + ambiguous[(chat, next(t for t in texts if t and "/help" in t))], f"/help in {chat}"
    stored = await fetch(database_url, "SELECT count(*) FROM messages WHERE role = 'user' AND kind = 'text'")
    assert stored[0][0] == sum(sent.values())
    owed = await fetch(database_url, "SELECT count(*) FROM outbox")
    assert owed[0][0] == 0, "nothing left queued or given up"
