"""Does the bot's memory grow with the number of chats it has seen? It must not: no per-chat
state is kept in process memory (locks, timers, tasks are bounded or dropped when done).

Run on demand:  python -m tests.bench.bench_memory [--checkpoints 1000 10000 100000]
Drives distinct chats (one message each, 200 in flight) through the real `aifriend run` against
the emulators and prints its RSS at each checkpoint. Uses DATABASE_URL when set, else an
embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from migrations import schema as migrate
from tests.bench.bench_bot import rss_mb
from tests.e2e.bot import running_bot
from tests.postgres import fresh_database, server_url


async def drive(telegram: TelegramEmulator, first: int, count: int, in_flight: int) -> None:
    """`count` new chats, each sending one message; at most `in_flight` unanswered at a time."""
    slots = asyncio.Semaphore(in_flight)

    async def one(chat: int) -> None:
        async with slots:
            telegram.user_sends(chat, "hello, nice to meet you")
            with contextlib.suppress(TimeoutError):
                await telegram.wait_for(chat, 1, 120)
            telegram.sent.pop(chat, None)  # the emulator forgets, so only the bot's memory is measured

    await asyncio.gather(*(one(chat) for chat in range(first, first + count)))


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            telegram, tgi = TelegramEmulator(), TGIEmulator()
            await telegram.start()
            await tgi.start()
            async with running_bot(telegram, tgi, url, Path(tmp), "--no-scheduler", LOG_LEVEL="WARNING") as bot:
                telegram.user_sends(1, "warm up")
                await telegram.wait_for(1, 1, 60)
                pid, seen, started = bot.process.pid, 0, time.monotonic()
                print(f"after warm-up: RSS {rss_mb(pid):.0f} MB")
                first_rss = None
                for checkpoint in options.checkpoints:
                    await drive(telegram, 10 + seen, checkpoint - seen, options.in_flight)
                    seen = checkpoint
                    await asyncio.sleep(2)
                    rss = rss_mb(pid)
                    first_rss = first_rss or rss
                    print(
                        f"after {seen:>7,} distinct chats: RSS {rss:.0f} MB ({rss / first_rss - 1:+.1%} from the "
                        f"first checkpoint); {time.monotonic() - started:.0f} s so far",
                        flush=True,
                    )
            await telegram.stop()
            await tgi.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--in-flight", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
