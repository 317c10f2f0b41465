"""Odd input through the real process: answered once and kindly, or refused cleanly."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import free_port, running_bot, until_idle
from tests.postgres import fetch

CHAT = 8001


async def test_a_message_of_control_characters_is_answered_once_even_when_redelivered(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler"):
        update_id = telegram.user_sends(CHAT, "\x01\x02\x1b\x7f\x00\x03")
        await telegram.wait_for(CHAT, 1, patience=60)
        for _ in range(3):
            telegram.redeliver(update_id)
        telegram.user_sends(CHAT, "and now real words")
        await telegram.wait_for(CHAT, 2)
        await until_idle(telegram, database_url)
    texts = telegram.texts(CHAT)
    assert len(texts) == 2 and "looks empty" in texts[0] and "real words" in texts[1]
    assert tgi.chat_requests()[-1]["messages"][-1]["content"] == "and now real words"


async def test_timezone_accepts_only_real_zones_and_says_so(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    asked = [
        "/timezone Europe",
        "/timezone " + "A" * 5000,
        "/timezone ../../../etc/passwd",
        "/timezone Mars/Olympus_Mons",
        "/timezone europe/berlin",
    ]
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler"):
        for n, command in enumerate(asked, start=1):
            telegram.user_sends(CHAT, command)
            await telegram.wait_for(CHAT, n, patience=60)
        await until_idle(telegram, database_url)
    texts = telegram.texts(CHAT)
    assert len(texts) == len(asked)
    assert all("I don't know a time zone called" in text for text in texts[:4]), texts
    assert len(texts[1]) < 400, "a 5,000-letter zone is not echoed back whole"
    assert texts[4].startswith("Got it, your time zone is Europe/Berlin")
    zone = await fetch(database_url, "SELECT timezone FROM users WHERE id = $1", CHAT)
    assert zone[0][0] == "Europe/Berlin"
    answers = await fetch(database_url, "SELECT role, kind FROM message_log WHERE chat_id = $1 ORDER BY id", CHAT)
    assert [tuple(a) for a in answers] == [("user", "command"), ("assistant", "command")] * len(asked)


async def test_a_webhook_body_that_is_not_an_update_gets_200_and_is_set_aside(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    env = {"WEBHOOK_URL": hook, "WEBHOOK_SECRET": "s3cret", "WEBHOOK_LISTEN": f"127.0.0.1:{port}"}
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler", **env):
        telegram.user_sends(CHAT, "hello over the webhook")
        await telegram.wait_for(CHAT, 1, patience=60)
        async with aiohttp.ClientSession() as session:
            for body in (b"<html>not json</html>", b'{"update_id": 91, "message": {"chat": "nope"}}', b"[1, 2]"):
                async with session.post(hook, data=body, headers=headers) as response:
                    assert response.status == 200, body
        telegram.user_sends(CHAT, "still there?")
        await telegram.wait_for(CHAT, 2)
    dead = await fetch(database_url, "SELECT update_id, error, raw FROM dead_letter_log ORDER BY id")
    assert len(dead) == 3
    assert "not JSON" in dead[0]["error"] and "<html>" in dead[0]["raw"]
    assert dead[1]["update_id"] == 91 and "unreadable" in dead[1]["error"]


async def test_a_mistyped_api_url_is_one_line_exit_2_and_never_shows_the_token(tmp_path: Path) -> None:
    token = "123456:SECRET-token-that-must-not-leak"
    env = {
        **os.environ,
        "BOT_TOKEN": token,
        "TELEGRAM_API_URL": f"htps://api.telegram.org/bot{token}/",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "run",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "TELEGRAM_API_URL" in lines[0], lines
    assert "SECRET" not in (out + err).decode()
