"""Replies shown while they are written (sendMessageDraft), through the real bot and emulators
with a model that writes 30 tokens a second."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot
from tests.postgres import fetch

CHAT = 4401
LONG = (
    "tell me everything about your favourite places to walk in the rain and why they matter "
    "so much to you, and what you think about when the streets are empty and quiet"
)


async def test_drafts_grow_before_the_final_message_which_is_stored_once(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    tgi.tokens_per_second = 30
    async with running_bot(telegram, tgi, database_url, tmp_path) as bot:
        telegram.user_sends(CHAT + 1, "hello")  # the process is up and answering
        await telegram.wait_for(CHAT + 1, 1, 30)
        sent_at = time.monotonic()
        telegram.user_sends(CHAT, LONG)
        final = (await telegram.wait_for(CHAT, 1, 30))[0]
        drafts = telegram.drafts[CHAT]
        assert len(drafts) >= 2, drafts
        assert drafts[0]["received_at"] - sent_at < 1.0, "text appears within moments of the first token"
        assert all(d["received_at"] < final["received_at"] for d in drafts), "every draft lands before the final"
        gaps = [b["received_at"] - a["received_at"] for a, b in itertools.pairwise(drafts)]
        assert min(gaps) >= 0.45, f"throttled to about two a second: {gaps}"
        texts = [d["text"] for d in drafts]
        assert all(final["text"].startswith(t) for t in texts) and texts == sorted(texts, key=len)
        assert len({d["draft_id"] for d in drafts}) == 1
    assert len(telegram.sent[CHAT]) == 1
    stored = await fetch(database_url, "SELECT text FROM messages WHERE chat_id = $1 AND role = 'assistant'", CHAT)
    assert [r["text"] for r in stored] == [final["text"]]
    assert "drafts_unsupported" not in bot.log()


async def test_a_server_without_drafts_falls_back_to_typing_and_says_so_once(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    tgi.tokens_per_second = 30
    telegram.offer_drafts = False
    async with running_bot(telegram, tgi, database_url, tmp_path) as bot:
        for n in range(2):
            telegram.user_sends(CHAT, f"number {n}: {LONG}")
            await telegram.wait_for(CHAT, n + 1, 30)
    assert not telegram.drafts[CHAT]
    assert (CHAT, "typing") in telegram.actions
    assert bot.log().count("drafts_unsupported") == 1
    assert [f"number {n}:" in m["text"] for n, m in enumerate(telegram.sent[CHAT])] == [True, True], telegram.texts(
        CHAT
    )


async def test_a_429_on_drafts_pauses_them_and_never_delays_the_final(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    tgi.tokens_per_second = 30
    telegram.draft_faults = [10]  # the first draft is refused: wait 10 s
    async with running_bot(telegram, tgi, database_url, tmp_path):
        telegram.user_sends(CHAT, "warm up the process first")
        await telegram.wait_for(CHAT, 1, 30)
        telegram.draft_faults = [10]
        before = len(telegram.drafts[CHAT])
        sent_at = time.monotonic()
        telegram.user_sends(CHAT, LONG)
        final = (await telegram.wait_for(CHAT, 2, 30))[-1]
    took = final["received_at"] - sent_at
    tokens = len(final["text"].split())
    assert took < tokens / 30 + 2.0, f"the final came {took:.1f} s after the message: the 429 held it up"
    assert len(telegram.drafts[CHAT]) == before, "no draft for that chat during its retry_after"
