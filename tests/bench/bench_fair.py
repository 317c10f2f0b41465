"""A fair share of the model, under a crowd: ordinary users beside a flooder and a wave of newcomers.

Run on demand:  python -m tests.bench.bench_fair [--seconds 30 --newcomers 150]
A model server emulator with 4 generation slots writing 40 tokens a second (a request beyond the
slots waits in the server's queue, as TGI's does). The real `aifriend run` (REPLY_DEBOUNCE 1.5 s),
in two configurations, each on a fresh database:

  without   MODEL_CONCURRENCY=0, LIMIT_REPLIES_PER_MINUTE=0, NEWCOMERS_PER_MINUTE=0 (nothing shared out)
  with      MODEL_CONCURRENCY=4 (the server's slots), LIMIT_REPLIES_PER_MINUTE=20, NEWCOMERS_PER_MINUTE=100

Each runs the scene twice: ten ordinary users alone (each writes, waits for the reply, thinks 3 s),
then the same ten beside one chat sending 10 messages a second and `--newcomers` new accounts saying
hi within `--seconds`. Prints the ordinary users' reply times (p50, p95) alone and beside the crowd,
fallback lines, newcomers answered (and how long the last one waited), and what the flooder got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from migrations import schema as migrate
from tests.bench.bench_bot import percentile
from tests.e2e.bot import running_bot
from tests.postgres import fetch, fresh_database, server_url

ORDINARY = range(1, 11)
FLOODER = 99
NEWCOMERS_FROM = 1000
# The emulated model echoes what it is told: these lengths give replies of 60 to 70 tokens, about
# 1.6 s each at 40 tokens a second, like a companion's few sentences.
SAYING = (
    "today I finally finished the long book about the sea that my sister gave me last winter, and I keep "
    "thinking about the old lighthouse keeper in it and how quiet his evenings must have been, alone with "
    "the lamp and the wind, writing letters to a daughter who never wrote back, and I wonder whether he "
    "was lonely or just at peace"
)
HELLO = (
    "hi! a friend told me about you and said you are nice to talk to in the evenings. I just moved to a "
    "new city for work, I don't know anyone here yet, and the flat is still full of boxes. What do people "
    "usually talk to you about?"
)
CONFIGURATIONS = {
    "without": {"MODEL_CONCURRENCY": "0", "LIMIT_REPLIES_PER_MINUTE": "0", "NEWCOMERS_PER_MINUTE": "0"},
    "with": {"MODEL_CONCURRENCY": "4", "LIMIT_REPLIES_PER_MINUTE": "20", "NEWCOMERS_PER_MINUTE": "100"},
}


@dataclass
class Scene:
    ordinary: list[float] = field(default_factory=list)  # seconds from message to the reply
    newcomer_waits: list[float] = field(default_factory=list)
    newcomers_told: int = 0
    newcomers_unanswered: int = 0
    fallbacks: int = 0
    flooder_sent: int = 0
    flooder_replies: int = 0
    flooder_notices: int = 0


async def _ordinary(telegram: TelegramEmulator, chat: int, until: float, waits: list[float]) -> None:
    while time.monotonic() < until:
        before = len(telegram.sent[chat])
        update = telegram.user_sends(chat, SAYING)
        with contextlib.suppress(TimeoutError):
            sent = await telegram.wait_for(chat, before + 1, 120)
            waits.append(sent[before]["received_at"] - telegram.pushed_at[update])
        await asyncio.sleep(3.0)


async def _flood(telegram: TelegramEmulator, until: float) -> int:
    sent = 0
    while time.monotonic() < until:
        telegram.user_sends(FLOODER, f"spam {sent} spam spam")
        sent += 1
        await asyncio.sleep(0.1)
    return sent


async def _newcomers(telegram: TelegramEmulator, count: int, seconds: float) -> dict[int, int]:
    arrived: dict[int, int] = {}
    for n in range(count):
        chat = NEWCOMERS_FROM + n
        arrived[chat] = telegram.user_sends(chat, HELLO)
        await asyncio.sleep(seconds / count)
    return arrived


def _model_replies(telegram: TelegramEmulator, chat: int) -> list[dict[str, object]]:
    return [m for m in telegram.sent[chat] if str(m.get("text", "")).startswith("[emulated model]")]


async def scene(name: str, env: dict[str, str], options: argparse.Namespace, base: str, folder: Path) -> Scene:
    result = Scene()
    async with fresh_database(base) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        telegram = TelegramEmulator()
        tgi = TGIEmulator(tokens_per_second=40, slots=4)
        await telegram.start()
        await tgi.start()
        try:
            async with running_bot(telegram, tgi, url, folder, LOG_LEVEL="WARNING", REPLY_DEBOUNCE="1.5s", **env):
                telegram.user_sends(500, "warm up")
                await telegram.wait_for(500, 1, 120)
                alone: list[float] = []
                end = time.monotonic() + options.seconds
                await asyncio.gather(*(_ordinary(telegram, chat, end, alone) for chat in ORDINARY))
                end = time.monotonic() + options.seconds
                started = time.monotonic()
                _, result.flooder_sent, arrived = await asyncio.gather(
                    asyncio.gather(*(_ordinary(telegram, chat, end, result.ordinary) for chat in ORDINARY)),
                    _flood(telegram, end),
                    _newcomers(telegram, options.newcomers, options.seconds),
                )
                deadline = time.monotonic() + options.patience
                while time.monotonic() < deadline and any(not _model_replies(telegram, c) for c in arrived):
                    await asyncio.sleep(0.5)
                for chat, update in arrived.items():
                    replies = _model_replies(telegram, chat)
                    if replies:
                        result.newcomer_waits.append(float(str(replies[0]["received_at"])) - telegram.pushed_at[update])
                    else:
                        result.newcomers_unanswered += 1
                    result.newcomers_told += any("saying hi" in str(m.get("text", "")) for m in telegram.sent[chat])
                result.flooder_replies = len(_model_replies(telegram, FLOODER))
                result.flooder_notices = sum(
                    "catch my breath" in str(m.get("text", "")) for m in telegram.sent[FLOODER]
                )
                rows = await fetch(url, "SELECT count(*) FROM messages WHERE kind = 'fallback'")
                result.fallbacks = int(rows[0][0])
                crowd_seconds = time.monotonic() - started
        finally:
            await telegram.stop()
            await tgi.stop()
    print(
        f"{name:<8} ordinary users alone: p50 {percentile(alone, 0.5):5.2f} s p95 {percentile(alone, 0.95):5.2f} s "
        f"({len(alone)} replies) | beside the crowd: p50 {percentile(result.ordinary, 0.5):5.2f} s "
        f"p95 {percentile(result.ordinary, 0.95):5.2f} s ({len(result.ordinary)} replies), "
        f"p95 ratio {percentile(result.ordinary, 0.95) / percentile(alone, 0.95):.2f}x\n"
        f"         fallback lines {result.fallbacks} | newcomers answered {len(result.newcomer_waits)} of "
        f"{options.newcomers} (told to wait: {result.newcomers_told}; median wait "
        f"{percentile(result.newcomer_waits, 0.5):.1f} s, last {max(result.newcomer_waits, default=0):.1f} s) | "
        f"flooder: {result.flooder_sent} messages, {result.flooder_replies} replies, {result.flooder_notices} "
        f"notice(s) in {crowd_seconds:.0f} s | model server busiest {tgi.busiest} at once"
    )
    return result


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        print(
            f"model server: 4 slots, 40 tokens/s each; 10 ordinary users; crowd: 1 flooder at 10 msg/s and "
            f"{options.newcomers} newcomers within {options.seconds:g} s"
        )
        for name in options.only or CONFIGURATIONS:
            await scene(name, CONFIGURATIONS[name], options, base, Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--newcomers", type=int, default=150)
    parser.add_argument("--patience", type=float, default=240.0, help="how long to wait for the last newcomers")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGURATIONS), help="run only these configurations")
    asyncio.run(main(parser.parse_args()))
