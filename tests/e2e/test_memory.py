"""/memory and /memory forget through the real bot, the emulators and PostgreSQL, as a user sees them."""

from __future__ import annotations

from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot
from tests.postgres import fetch
from tests.waiting import until as until_true

CHAT = 4501


async def _exchange(telegram: TelegramEmulator, text: str) -> str:
    before = len(telegram.sent[CHAT])
    telegram.user_sends(CHAT, text)
    return (await telegram.wait_for(CHAT, before + 1))[-1].get("text", "")


async def _press(telegram: TelegramEmulator, button: int, until: str) -> str:
    question = telegram.sent[CHAT][-1]
    data = question["reply_markup"]["inline_keyboard"][0][button]["callback_data"]
    telegram.user_presses(CHAT, question["message_id"], data)
    await until_true(lambda: until in (telegram.sent[CHAT][-1].get("text") or ""), what=f"an answer with {until!r}")
    return str(telegram.sent[CHAT][-1]["text"])


async def test_memory_shows_the_notes_and_forget_removes_a_subject_from_every_later_prompt(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    async with running_bot(telegram, tgi, database_url, tmp_path):
        assert "haven't written anything down" in await _exchange(telegram, "/memory")
        await _exchange(telegram, "I bought a red kayak last summer")
        await _exchange(telegram, "My cat is called Pepper")
        await _exchange(telegram, "We went kayaking on the lake on Sunday")
        # What the model's summaries would have written by now (the emulated model only echoes).
        await fetch(
            database_url,
            "UPDATE conversations SET memory_summary = $2 WHERE chat_id = $1",
            CHAT,
            "Ann bought a red kayak last summer. She has a cat called Pepper.\nShe works nights.",
        )
        await fetch(
            database_url,
            "INSERT INTO daily_summaries (chat_id, day, text, through_message_id) VALUES ($1, current_date - 1, $2, 1)",
            CHAT,
            "They talked about kayaks and the lake. Ann felt calm.",
        )

        shown = await _exchange(telegram, "/memory")
        assert "red kayak" in shown and "Pepper" in shown and "kayaks and the lake" in shown
        assert "/memory forget" in shown

        assert "Name something specific" in await _exchange(telegram, "/memory forget the and of")
        assert "like this" in await _exchange(telegram, "/memory forget")
        confirm = await _exchange(telegram, "/memory forget kayak")
        assert "kayak" in confirm and "?" in confirm
        done = await _press(telegram, 0, "forgotten")
        assert "kayak" in done

        shown = await _exchange(telegram, "/memory")
        assert "kayak" not in shown.lower() and "Pepper" in shown and "Ann felt calm" in shown
        assert "works nights" in shown

        await _exchange(telegram, "What do you remember about my summer, my boat and my cat?")
        await _exchange(telegram, "Do you remember the lake?")
    prompts = [str(r["messages"]) for r in tgi.chat_requests()]
    assert all("kayak" in p.lower() for p in prompts[:3]), "the subject was in the prompts before"
    assert "kayak" not in prompts[-1].lower() and "kayak" not in prompts[-2].lower()
    assert "Pepper" in prompts[-1]
    memory = (await fetch(database_url, "SELECT * FROM chat_memory WHERE chat_id = $1", CHAT))[0]
    assert memory["forgotten_words"] == ["kayak"] and memory["forgotten_messages"] >= 4  # 2 said, 2 echoed
    assert "kayak" not in memory["notebook"]
    kept = await fetch(
        database_url, "SELECT count(*) FROM message_log WHERE chat_id = $1 AND text ILIKE '%kayak%'", CHAT
    )
    assert kept[0][0] >= 4, "operators still see the messages until /forget"


async def test_memory_forget_can_be_called_off(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    async with running_bot(telegram, tgi, database_url, tmp_path):
        await _exchange(telegram, "I bought a red kayak last summer")
        await _exchange(telegram, "/memory forget kayak")
        assert "keep remembering" in await _press(telegram, 1, "keep remembering")
        await _exchange(telegram, "Tell me about my boat")
    assert "red kayak" in str(tgi.chat_requests()[-1]["messages"])
    forgets = await fetch(database_url, "SELECT count(*) FROM memory_forgets")
    assert forgets[0][0] == 0
