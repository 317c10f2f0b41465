"""Whatever the Bot API (or a proxy in front of it) answers, the process keeps polling."""

from __future__ import annotations

from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot, until_idle
from tests.waiting import until

CHAT = 3201


async def test_html_502_and_resets_on_get_updates_are_retried_not_fatal(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler") as bot:
        telegram.user_sends(CHAT, "before the proxy broke")
        await telegram.wait_for(CHAT, 1, patience=60)
        telegram.update_faults += ["502html", "reset", "502html"]
        telegram.user_sends(CHAT, "the proxy breaks after this one")  # ends the long poll in flight
        await until(lambda: not telegram.update_faults, within=10, what="the bot to keep asking for updates")
        telegram.user_sends(CHAT, "after the proxy broke")
        await telegram.wait_for(CHAT, 3, patience=20)
        await until_idle(telegram, database_url)
        assert bot.process.returncode is None, bot.log()[-2000:]
    assert "after the proxy broke" in telegram.sent[CHAT][2]["text"]
    assert "get_updates_failed" in bot.log()
