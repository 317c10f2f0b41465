"""Voice and video notes through the real `aifriend run`: downloaded through the Bot API emulator's
getFile and file route, decoded by PyAV, transcribed by a real recogniser that needs no download
(pocketsphinx), and answered like text; the limits, the failures and a crash mid-transcription."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from app.telegram.texts import NOT_TEXT
from tests.e2e.bot import free_port, running_bot, until_idle, webhook_replica
from tests.e2e.roundrobin import RoundRobin
from tests.postgres import fetch
from tests.speech import HEARD_WORDS, as_video_note, repeated, sample
from tests.waiting import START_UP, held_within, until

VOICE = {"ASR_BACKEND": "pocketsphinx"}


def _last_user_prompt(tgi: TGIEmulator) -> str:
    replies = [b for p, b in tgi.requests if p == "/v1/chat/completions"]
    return str(replies[-1]["messages"][-1]["content"]).lower()


def _model_prompts_with(tgi: TGIEmulator, words: str) -> int:
    return sum(
        1
        for p, b in tgi.requests
        if p == "/v1/chat/completions" and any(words in str(m.get("content", "")) for m in b["messages"])
    )


async def _notes(database_url: str, chat: int) -> list[Any]:
    return await fetch(
        database_url,
        "SELECT kind, status, outcome, attempts, message_id IS NOT NULL FROM voice_notes WHERE chat_id = $1",
        chat,
    )


async def _log(database_url: str, chat: int) -> list[tuple[str, str, str]]:
    rows = await fetch(database_url, "SELECT role, kind, text FROM message_log WHERE chat_id = $1 ORDER BY id", chat)
    return [(row[0], row[1], row[2]) for row in rows]


async def test_a_voice_note_and_a_video_note_are_heard_and_answered_like_text(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    voice_user, video_user = 9301, 9302
    async with running_bot(telegram, tgi, database_url, tmp_path, **VOICE) as bot:
        telegram.user_sends_voice(voice_user, sample(), duration=5)
        [reply] = await telegram.wait_for(voice_user, 1, patience=START_UP)
        prompt = _last_user_prompt(tgi)
        assert all(word in prompt for word in HEARD_WORDS), prompt
        assert reply["text"].startswith("[emulated model] hello robin"), reply
        assert (voice_user, "typing") in telegram.actions, "the chat showed the friend at work"

        telegram.user_sends_voice(video_user, as_video_note(), duration=5, video=True)
        await telegram.wait_for(video_user, 1, patience=START_UP)
        assert all(word in _last_user_prompt(tgi) for word in HEARD_WORDS)
        await until_idle(telegram, database_url)
        assert '"voice_notes_on"' in bot.log() and "pocketsphinx" in bot.log()

    assert telegram.downloads and len(telegram.downloads) == 2, "each note downloaded once"
    [(role, kind, text), (_, reply_kind, _)] = await _log(database_url, voice_user)
    assert (role, kind, reply_kind) == ("user", "voice", "reply") and "puppy" in text, "operators see the transcript"
    assert await _notes(database_url, voice_user) == [("voice", "heard", None, 1, True)]
    assert await _notes(database_url, video_user) == [("video_note", "heard", None, 1, True)]
    counted = await fetch(database_url, "SELECT user_messages FROM conversations WHERE chat_id = $1", voice_user)
    assert counted[0][0] == 1, "a voice note counts for the stage machine like a typed message"


async def test_notes_too_long_too_big_or_undecodable_get_one_kind_answer_and_no_model_request(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    long_user, big_user, broken_user = 9311, 9312, 9313
    async with running_bot(telegram, tgi, database_url, tmp_path, VOICE_MAX_SECONDS="60", **VOICE):
        telegram.user_sends_voice(long_user, sample(), duration=61)
        telegram.user_sends_voice(big_user, sample(), duration=50, claimed_size=25 * 1024 * 1024)
        telegram.user_sends_voice(broken_user, os.urandom(20_000), duration=4)
        for user in (long_user, big_user, broken_user):
            await telegram.wait_for(user, 1, patience=START_UP)
        assert not await held_within(lambda: any(len(telegram.sent[u]) > 1 for u in (big_user, broken_user)), 3.0)
        await until_idle(telegram, database_url)

    assert "1 minute at most" in telegram.texts(long_user)[0]
    assert "20 MB" in telegram.texts(big_user)[0]
    assert telegram.texts(broken_user) == ["I couldn't make that out, could you type it?"]
    assert not [b for p, b in tgi.requests if p == "/v1/chat/completions"], "no model request for any of them"
    assert telegram.downloads == [telegram.downloads[0]], "only the undecodable note was downloaded"
    assert await _log(database_url, long_user) == [
        ("user", "other", "[voice note, 1:01]"),
        ("assistant", "other", telegram.texts(long_user)[0]),
    ]
    assert await _notes(database_url, broken_user) == [("voice", "refused", "undecodable", 1, False)]


async def test_without_a_recogniser_start_up_says_why_and_voice_gets_the_text_only_line(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 9321
    missing = tmp_path / "no-such-model"
    async with running_bot(
        telegram, tgi, database_url, tmp_path, ASR_BACKEND="faster-whisper", ASR_MODEL=str(missing), HF_HUB_OFFLINE="1"
    ) as bot:
        telegram.user_sends_voice(user, sample(), duration=5)
        [answer] = await telegram.wait_for(user, 1, patience=START_UP)
        telegram.user_sends(user, "so you can't hear me?")
        await telegram.wait_for(user, 2)
        log = bot.log()
    assert answer["text"] == NOT_TEXT
    [line] = [line for line in log.splitlines() if '"voice_notes_off"' in line]
    assert "ASR_MODEL" in line and "huggingface-cli download" in line, line
    assert bot.process.returncode == 0, "not a crash"


async def test_a_crash_mid_transcription_is_finished_once_by_the_next_process(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 9331
    settings = {"VOICE_MAX_SECONDS": "40", **VOICE}  # a claim expires after 20 s
    async with running_bot(telegram, tgi, database_url, tmp_path, **settings) as first:
        telegram.user_sends_voice(user, repeated(6), duration=31)

        async def claimed() -> bool:
            rows = await fetch(database_url, "SELECT claimed_by IS NOT NULL FROM voice_notes WHERE status = 'waiting'")
            return bool(rows) and bool(rows[0][0])

        await until(claimed, within=START_UP, every=0.01, what="the note claimed")
        await first.stop(signal.SIGKILL)
    assert not telegram.sent[user], "killed before it answered"
    async with running_bot(telegram, tgi, database_url, tmp_path, **settings):
        await telegram.wait_for(user, 1, patience=60)
        await until_idle(telegram, database_url)
        assert not await held_within(lambda: len(telegram.sent[user]) > 1, 3.0)
    assert len(telegram.sent[user]) == 1
    assert await _notes(database_url, user) == [("voice", "heard", None, 2, True)]
    voices = await fetch(database_url, "SELECT count(*) FROM messages WHERE chat_id = $1 AND kind = 'voice'", user)
    assert voices[0][0] == 1


async def test_a_note_redelivered_to_a_second_process_is_transcribed_once(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 9341
    ports = [free_port(), free_port()]
    balancer = RoundRobin([f"http://127.0.0.1:{p}" for p in ports])
    hook = await balancer.start() + "/telegram/hook"
    try:
        async with (
            running_bot(telegram, tgi, database_url, tmp_path, **webhook_replica(hook, ports[0], **VOICE)),
            running_bot(telegram, tgi, database_url, tmp_path, **webhook_replica(hook, ports[1], **VOICE)),
        ):
            telegram.user_sends_voice(user, repeated(2), duration=10)
            note = dict(telegram.updates[-1]["message"])
            await until(lambda: telegram.webhook_deliveries >= 1, within=START_UP, what="the first delivery")
            # The same note again (as after a lost confirmation); the round robin hands it to the other replica.
            telegram.push(message=note)
            await telegram.wait_for(user, 1, patience=START_UP)
            await until_idle(telegram, database_url)
            assert not await held_within(lambda: len(telegram.sent[user]) > 1, 3.0)
            assert all(served > 0 for served in balancer.served.values()), "both replicas saw the note"
    finally:
        await balancer.stop()
    assert len(telegram.downloads) == 1 and len(telegram.sent[user]) == 1
    assert _model_prompts_with(tgi, "puppy") == 1
    assert await _notes(database_url, user) == [("voice", "heard", None, 1, True)]


async def test_a_text_and_a_voice_note_in_a_burst_get_one_reply_in_order(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 9351
    async with running_bot(telegram, tgi, database_url, tmp_path, REPLY_DEBOUNCE="4s", **VOICE):
        telegram.user_sends(user, "guess what happened")
        telegram.user_sends_voice(user, sample(), duration=5)
        [reply] = await telegram.wait_for(user, 1, patience=START_UP)
        await until_idle(telegram, database_url)
        assert not await held_within(lambda: len(telegram.sent[user]) > 1, 3.0)
    prompt = _last_user_prompt(tgi)
    assert prompt.index("guess what happened") < prompt.index("puppy"), prompt
    assert "puppy" in reply["text"] or "guess what happened" in reply["text"]


async def test_a_text_sent_right_after_a_voice_note_waits_for_it_and_both_get_one_reply_in_order(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    """The note takes a couple of seconds to hear; the text behind it is stored first. The reply
    waits for the note and answers both, in the order they were sent."""
    user = 9361
    async with running_bot(telegram, tgi, database_url, tmp_path, REPLY_DEBOUNCE="1.5s", **VOICE):  # the default
        telegram.user_sends_voice(user, repeated(2), duration=10)
        telegram.user_sends(user, "did you get that?")
        [reply] = await telegram.wait_for(user, 1, patience=START_UP)
        await until_idle(telegram, database_url)
        assert not await held_within(lambda: len(telegram.sent[user]) > 1, 3.0), "one reply to both"
    prompt = _last_user_prompt(tgi)
    assert prompt.index("puppy") < prompt.index("did you get that"), prompt
    stored = await fetch(
        database_url, "SELECT kind FROM messages WHERE chat_id = $1 AND role = 'user' ORDER BY id", user
    )
    assert [row[0] for row in stored] == ["text", "voice"], "the text was stored first, the note once heard"
    assert reply["text"].startswith("[emulated model]")
