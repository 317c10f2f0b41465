"""What a user sees while a reply is written: streamed drafts against typing only.

Run on demand:  python -m tests.bench.bench_streaming [--tokens-per-second 30 --replies 40]
The TGI emulator writes at a realistic pace; the real `aifriend run` answers `--replies`
messages from different chats (a few at a time), once with the Bot API emulator offering
sendMessageDraft and once as a server without it. Prints, from the update to the first visible
text and to the final message, p50 and p99; draft calls per reply; lost or duplicated finals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from migrations import schema as migrate
from tests.bench.bench_bot import percentile
from tests.e2e.bot import running_bot
from tests.postgres import fresh_database, server_url

QUESTION = (
    "tell me about the places you would like to see one day, and what you would do there "
    "first, and who you would like to bring along with you"
)


async def run(drafts: bool, options: argparse.Namespace, url: str, folder: Path, first_chat: int) -> str:
    # update ids are unique per bot: a second run continues after the first (the database remembers them)
    telegram = TelegramEmulator(offer_drafts=drafts, first_update_id=first_chat)
    tgi = TGIEmulator(tokens_per_second=options.tokens_per_second)
    await telegram.start()
    await tgi.start()
    pushed: dict[int, int] = {}
    async with running_bot(telegram, tgi, url, folder, "--no-scheduler", LOG_LEVEL="WARNING"):
        telegram.user_sends(first_chat - 1, "warm up")
        await telegram.wait_for(first_chat - 1, 1, 60)
        chats = range(first_chat, first_chat + options.replies)
        for chat in chats:
            pushed[chat] = telegram.user_sends(chat, QUESTION)
            await asyncio.sleep(options.every)
        for chat in chats:
            with contextlib.suppress(TimeoutError):
                await telegram.wait_for(chat, 1, 120)
        await asyncio.sleep(1.0)
    await telegram.stop()
    await tgi.stop()
    first, final, calls = [], [], []
    lost = sum(1 for chat in chats if not telegram.sent[chat])
    for chat in (c for c in chats if telegram.sent[c]):
        start = telegram.pushed_at[pushed[chat]]
        done = telegram.sent[chat][0]["received_at"]
        shown = [d["received_at"] for d in telegram.drafts[chat]]
        first.append(((shown[0] if shown else done) - start) * 1000)
        final.append((done - start) * 1000)
        calls.append(len(shown))
    duplicated = sum(max(0, len(telegram.sent[c]) - 1) for c in chats)
    return (
        f"{'drafts' if drafts else 'typing only':<12} first visible text p50 {percentile(first, 0.5):6.0f} ms "
        f"p99 {percentile(first, 0.99):6.0f} ms | final message p50 {percentile(final, 0.5):6.0f} ms "
        f"p99 {percentile(final, 0.99):6.0f} ms | draft calls per reply {sum(calls) / len(calls):.1f} | "
        f"lost {lost}, duplicated {duplicated}"
    )


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            lines = [
                await run(True, options, url, Path(tmp), 10_000),
                await run(False, options, url, Path(tmp), 20_000),
            ]
    print(
        f"model writing {options.tokens_per_second:g} tokens/s, {options.replies} replies, "
        f"a new message every {options.every:g} s:"
    )
    for line in lines:
        print("  " + line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    parser.add_argument("--replies", type=int, default=40)
    parser.add_argument("--every", type=float, default=0.25, help="seconds between two users' messages")
    asyncio.run(main(parser.parse_args()))
