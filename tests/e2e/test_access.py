"""Who may talk: the real `aifriend run` in each ACCESS_MODE, operators' commands and buttons, invite
codes, a blocked user, and Telegram's word that a user blocked or unblocked the bot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot, until_idle
from tests.postgres import fetch
from tests.waiting import START_UP, held_within, until

ADMIN = 9001


async def _said(telegram: TelegramEmulator, chat: int, text: str, *, answers: int = 1) -> list[str]:
    """Send `text` and return the next `answers` messages the chat gets."""
    before = len(telegram.sent[chat])
    telegram.user_sends(chat, text)
    sent = await telegram.wait_for(chat, before + answers)
    return [m.get("text", "") for m in sent[before:]]


def _prompt_users(tgi: TGIEmulator) -> list[str]:
    """The user's lines in the last prompt the model got, after its last assistant turn (the prompt
    joins consecutive user messages into one turn, a line each)."""
    messages: list[dict[str, Any]] = tgi.chat_requests()[-1]["messages"]
    turns: list[str] = []
    for message in messages:
        if message["role"] == "assistant":
            turns = []
        elif message["role"] == "user":
            turns.extend(message["content"].split("\n"))
    return turns


async def _log(database_url: str) -> list[tuple[Any, ...]]:
    rows = await fetch(database_url, "SELECT user_id, action, by_user_id FROM access_log ORDER BY id")
    return [tuple(row) for row in rows]


async def test_allowlist_keeps_a_strangers_messages_tells_them_once_and_answers_them_together_when_allowed(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    stranger = 5101
    async with running_bot(telegram, tgi, database_url, tmp_path, ACCESS_MODE="allowlist", ADMIN_IDS=str(ADMIN)) as bot:
        [notice] = await _said(telegram, stranger, "hi, is anyone there?")
        assert "not on my list" in notice
        telegram.user_sends(stranger, "I love walking by the river")
        telegram.user_sends(stranger, "and my cat is called Miso")
        await until(
            lambda: _user_messages(database_url, stranger, 3), within=START_UP, what="all three messages stored"
        )
        assert not await held_within(lambda: len(telegram.sent[stranger]) > 1, 2.0), "told once, not per message"
        assert tgi.chat_requests() == [], "no model reply for someone not let in"

        [answer] = await _said(telegram, ADMIN, f"/allow {stranger}")
        assert f"User {stranger} may talk now" in answer
        await telegram.wait_for(stranger, 2)
        await until_idle(telegram, database_url)
        assert len(telegram.sent[stranger]) == 2, "one reply to the three messages, not three"
        assert _prompt_users(tgi) == [
            "hi, is anyone there?",
            "I love walking by the river",
            "and my cat is called Miso",
        ]
        reply = await _said(telegram, stranger, "thanks!")
        assert reply[0].startswith("[emulated model]")
        assert "access_decided" in bot.log()
    assert await _log(database_url) == [(stranger, "allowed", ADMIN)]


async def _user_messages(database_url: str, chat: int, count: int) -> bool:
    rows = await fetch(database_url, "SELECT count(*) FROM messages WHERE chat_id = $1 AND role = 'user'", chat)
    return bool(rows[0][0] >= count)


async def test_invite_codes_are_single_use_expire_and_are_refused_after_ten_wrong_tries(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    first, second, late, guesser = 5201, 5202, 5203, 5204
    async with running_bot(telegram, tgi, database_url, tmp_path, ACCESS_MODE="invite", ADMIN_IDS=str(ADMIN)):
        [invite] = await _said(telegram, ADMIN, "/invite")
        link = re.search(r"https://t\.me/aifriend_bot\?start=([A-Za-z0-9_-]+)", invite)
        assert link is not None, invite
        code = link.group(1)
        assert len(code) >= 20, "at least 120 bits: never guessed"

        [notice] = await _said(telegram, first, "hello! a friend sent me here")
        assert "invite link" in notice
        [wrong] = await _said(telegram, first, "/start not-the-code")
        assert "doesn't work" in wrong
        greeting = await _said(telegram, first, f"/start {code}", answers=2)
        assert greeting[0].startswith("Hi, I'm Robin"), greeting
        assert greeting[1].startswith("[emulated model]"), "the message kept meanwhile is answered"
        assert _prompt_users(tgi) == ["hello! a friend sent me here"]

        [used] = await _said(telegram, second, f"/start {code}")
        assert "doesn't work" in used, "a single-use code lets in one person"

        [short] = await _said(telegram, ADMIN, "/invite 5 1s")
        brief = re.search(r"start=([A-Za-z0-9_-]+)", short)
        assert brief is not None
        await until(lambda: _expired(database_url), what="the one-second code to expire")
        [expired] = await _said(telegram, late, f"/start {brief.group(1)}")
        assert "doesn't work" in expired

        [fresh] = await _said(telegram, ADMIN, "/invite 3")
        good = re.search(r"start=([A-Za-z0-9_-]+)", fresh)
        assert good is not None
        for attempt in range(10):
            [answer] = await _said(telegram, guesser, f"/start guess{attempt}")
            assert "doesn't work" in answer
        [refused] = await _said(telegram, guesser, f"/start {good.group(1)}")
        assert "Too many wrong codes" in refused, "even a right code waits an hour after ten wrong ones"
    stored = await fetch(database_url, "SELECT count(*) FROM messages WHERE text LIKE '%' || $1 || '%'", code)
    assert stored[0][0] == 0, "an invite code is never stored in the message history"
    log = await _log(database_url)
    assert log.count((None, "invited", ADMIN)) == 3 and (first, "allowed", None) in log


async def _expired(database_url: str) -> bool:
    rows = await fetch(database_url, "SELECT count(*) FROM invite_codes WHERE expires_at < now()")
    return bool(rows[0][0] >= 1)


async def test_approval_asks_the_operators_with_buttons_and_their_answer_decides(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    welcome, turned_away = 5301, 5302
    async with running_bot(telegram, tgi, database_url, tmp_path, ACCESS_MODE="approval", ADMIN_IDS=str(ADMIN)):
        [waiting] = await _said(telegram, welcome, "hi! can we talk?")
        assert "asked the people who run me" in waiting
        question = (await telegram.wait_for(ADMIN, 1))[-1]
        assert f"user {welcome}" in question["text"] and "hi! can we talk?" in question["text"]
        buttons = question["reply_markup"]["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["Approve", "Refuse"]

        telegram.user_presses(ADMIN, question["message_id"], buttons[0]["callback_data"])
        reply = (await telegram.wait_for(welcome, 2))[-1]["text"]
        assert reply.startswith("[emulated model]") and _prompt_users(tgi) == ["hi! can we talk?"]

        telegram.user_sends(turned_away, "hello there")
        await telegram.wait_for(turned_away, 1)
        [listed] = await _said(telegram, ADMIN, "/pending")
        assert f"user {turned_away}" in listed and f"user {welcome}" not in listed
        requests = len(tgi.chat_requests())
        pending = telegram.sent[ADMIN][-1]
        refuse = pending["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
        telegram.user_presses(ADMIN, pending["message_id"], refuse)
        refusal = (await telegram.wait_for(turned_away, 2))[-1]["text"]
        assert "can't talk with you" in refusal
        telegram.user_sends(turned_away, "please?")
        await until(lambda: _user_messages(database_url, turned_away, 2), what="the second message stored")
        assert not await held_within(lambda: len(telegram.sent[turned_away]) > 2, 2.0), "told once"
        assert len(tgi.chat_requests()) == requests, "no model reply for a refused user"
    assert await _log(database_url) == [(welcome, "approved", ADMIN), (turned_away, "refused", ADMIN)]


async def test_a_blocked_user_gets_nothing_and_an_allowed_one_is_answered_again(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 5401
    async with running_bot(telegram, tgi, database_url, tmp_path, ADMIN_IDS=str(ADMIN)):
        await _said(telegram, user, "hello")
        [blocked] = await _said(telegram, ADMIN, f"/block {user}")
        assert "blocked" in blocked
        requests = len(tgi.chat_requests())
        telegram.user_sends(user, "are you ignoring me?")
        telegram.user_sends(user, "/help")
        telegram.user_sends_sticker(user)
        await until(lambda: _user_messages(database_url, user, 2), what="the blocked user's text stored")
        assert not await held_within(lambda: len(telegram.sent[user]) > 1, 2.0), "nothing at all for a blocked user"
        assert len(tgi.chat_requests()) == requests

        await _said(telegram, ADMIN, f"/allow {user}")
        await telegram.wait_for(user, 2)
        assert _prompt_users(tgi)[-1] == "are you ignoring me?"
    assert await _log(database_url) == [(user, "blocked", ADMIN), (user, "allowed", ADMIN)]


async def test_a_user_who_blocks_the_bot_is_inactive_at_once_and_active_again_when_they_unblock(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    user = 5501
    async with running_bot(telegram, tgi, database_url, tmp_path):
        await _said(telegram, user, "hello")
        telegram.user_blocks_bot(user)
        await until(lambda: _active(database_url, user, False), within=START_UP, what="the chat marked inactive")
        due = await fetch(database_url, "SELECT next_checkin_at FROM conversations WHERE chat_id = $1", user)
        assert due[0][0] is None, "no check-in for someone who blocked the bot"
        telegram.user_blocks_bot(user, blocked=False)
        await until(lambda: _active(database_url, user, True), what="the chat active again")


async def _active(database_url: str, chat: int, active: bool) -> bool:
    rows = await fetch(database_url, "SELECT active FROM conversations WHERE chat_id = $1", chat)
    return bool(rows) and rows[0][0] is active
