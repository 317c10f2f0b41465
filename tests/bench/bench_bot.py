"""Per-message overhead of the real bot: `aifriend run` against the emulators, an instant model.

Run on demand (not part of the suite):  python -m tests.bench.bench_bot
Uses DATABASE_URL when set, else an embedded PostgreSQL in a temporary folder.
Prints: latency p50/p95/p99 from update to reply at a steady 100 msg/s, sustained
messages per second with 1,000 chats writing at once, and transactions per message.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from storage import migrate
from tests.e2e.bot import running_bot
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.tgi import TGIEmulator
from tests.postgres import fresh_database, plain_dsn, server_url


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _commits(url: str) -> int:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        return int(await connection.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
    finally:
        await connection.close()


async def _wait_all(telegram: TelegramEmulator, chats: range, per_chat: int, patience: float) -> None:
    deadline = time.monotonic() + patience
    while any(len(telegram.sent[c]) < per_chat for c in chats):
        if time.monotonic() > deadline:
            missing = sum(per_chat - len(telegram.sent[c]) for c in chats if len(telegram.sent[c]) < per_chat)
            raise TimeoutError(f"{missing} replies missing")
        await asyncio.sleep(0.01)


async def steady(telegram: TelegramEmulator, rate: float, seconds: float, first_chat: int) -> list[float]:
    """One message per new chat at `rate` per second; latency from update to reply, in ms."""
    count = int(rate * seconds)
    chats = range(first_chat, first_chat + count)
    start = time.monotonic()
    updates = {}
    for n, chat in enumerate(chats):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        updates[chat] = telegram.user_sends(chat, f"hello number {n}, how are you?")
    await _wait_all(telegram, chats, 1, 120)
    return [(telegram.sent[c][0]["received_at"] - telegram.pushed_at[updates[c]]) * 1000 for c in chats]


async def burst(telegram: TelegramEmulator, chats: int, per_chat: int, first_chat: int) -> float:
    """`chats` users each sending `per_chat` messages (one at a time); messages per second."""
    ids = range(first_chat, first_chat + chats)
    start = time.monotonic()

    async def user(chat: int) -> None:
        for n in range(per_chat):
            telegram.user_sends(chat, f"message {n} from {chat}")
            while len(telegram.sent[chat]) <= n:
                await asyncio.sleep(0.005)

    await asyncio.gather(*(user(chat) for chat in ids))
    return chats * per_chat / (time.monotonic() - start)


async def main(rate: float, seconds: float, chats: int, per_chat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            telegram, tgi = TelegramEmulator(), TGIEmulator()
            await telegram.start()
            await tgi.start()
            async with running_bot(telegram, tgi, url, Path(tmp), "--no-scheduler", LOG_LEVEL="WARNING"):
                telegram.user_sends(1, "warm up")
                await telegram.wait_for(1, 1, 60)
                before = await _commits(url)
                latencies = await steady(telegram, rate, seconds, 10_000)
                after = await _commits(url)
                per_message = (after - before) / len(latencies)
                throughput = await burst(telegram, chats, per_chat, 100_000)
                lost = sum(1 for c in range(100_000, 100_000 + chats) if len(telegram.sent[c]) != per_chat)
            await telegram.stop()
            await tgi.stop()
    print(f"steady {rate:.0f} msg/s for {seconds:.0f}s ({len(latencies)} messages), update in -> reply out:")
    print(f"  p50 {_percentile(latencies, 0.50):.1f} ms   p95 {_percentile(latencies, 0.95):.1f} ms   "
          f"p99 {_percentile(latencies, 0.99):.1f} ms   mean {statistics.mean(latencies):.1f} ms")
    print(f"  database transactions per message: {per_message:.1f}")
    print(f"sustained: {chats} chats x {per_chat} messages: {throughput:.0f} msg/s; lost or duplicated: {lost}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--per-chat", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.rate, options.seconds, options.chats, options.per_chat))
