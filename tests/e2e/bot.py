"""Run the real `aifriend run` process against the emulators and talk to it as users."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.postgres import fetch
from tests.waiting import until


@dataclass
class BotProcess:
    process: asyncio.subprocess.Process
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode or 0


@contextlib.asynccontextmanager
async def running_bot(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path, *args: str, **env: str
) -> AsyncIterator[BotProcess]:
    log_path = tmp_path / f"bot-{len(list(tmp_path.glob('bot-*.log')))}.log"
    environment = {
        **os.environ,
        "BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TGI_URL": tgi.url,
        "DATABASE_URL": database_url,
        "REPLY_DEBOUNCE": "0s",
        "LOG_FORMAT": "json",
        "LIMIT_REPLIES_PER_MINUTE": "0",  # these users write faster than any person; limits have their own tests
        **env,
    }
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "run", *args, env=environment, cwd=tmp_path, stdout=log, stderr=log
        )
    bot = BotProcess(process, log_path)
    try:
        yield bot
    finally:
        await bot.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook_replica(hook: str, port: int, **env: str) -> dict[str, str]:
    """The settings of one of several `aifriend run` webhook processes behind a balancer at `hook`."""
    return {
        "WEBHOOK_URL": hook,
        "WEBHOOK_SECRET": "shared-secret",
        "WEBHOOK_LISTEN": f"127.0.0.1:{port}",
        **env,
    }


async def until_idle(telegram: TelegramEmulator, database_url: str, *, within: float = 30.0) -> None:
    """Until the bot has taken in every update (confirmed to Telegram), answered every message and
    sent everything it queued, with no Bot API call in flight: after that nothing more arrives."""

    async def idle() -> bool:
        if telegram.unconfirmed or telegram.in_flight:
            return False
        rows = await fetch(
            database_url,
            "SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending')"
            " AND NOT EXISTS (SELECT 1 FROM messages WHERE role = 'user' AND answered_at IS NULL)",
        )
        return bool(rows[0][0])

    await until(idle, within=within, what="the bot to be idle")
