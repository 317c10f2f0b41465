"""A bot process killed with SIGKILL, again and again, under load."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from app.services.delivery import SEND_CONCURRENCY
from tests.e2e.bot import running_bot, until_idle
from tests.faults.tally import sends_in_doubt
from tests.faults.users import chatter, settle
from tests.postgres import fetch
from tests.waiting import held_within, until

CHATS = range(5001, 5041)
KILLS = 5


async def test_kill_nine_five_times_under_load_loses_nothing_and_keeps_order(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    tgi.latency = 0.05
    sent: dict[int, int] = {}
    in_doubt: list[tuple[int, str]] = []
    users = asyncio.create_task(chatter(telegram, CHATS, per_chat=15, every=2.5, sent=sent))
    for _ in range(KILLS):
        async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler") as bot:
            before = sum(len(m) for m in telegram.sent.values())
            # once it is answering (a restart may owe nothing yet: its chats wait for the dead one's
            # leases, or the users have finished; then it is killed all the same)...
            await held_within(lambda before=before: sum(len(m) for m in telegram.sent.values()) > before, 20)
            await asyncio.sleep(random.uniform(0.0, 3.0))  # ...kill it at any moment: the moment is the test's input
            await bot.stop(signal.SIGKILL)
        # a request whose bytes were out when the process died still lands
        await until(lambda: telegram.in_flight == 0, what="the Bot API calls in flight to land")
        doubts = await sends_in_doubt(telegram, database_url)
        assert len(doubts) <= SEND_CONCURRENCY, f"more sends in doubt than a process has in flight: {doubts}"
        in_doubt += doubts
    with contextlib.suppress(asyncio.CancelledError):
        await users
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler"):
        result, recovery = await settle(telegram, sent, patience=90)
        await until_idle(telegram, database_url)
        result, _ = await settle(telegram, sent, patience=1)
    print(
        f"after {KILLS} kills: {result.line()}; {len(in_doubt)} sends in doubt at the kills; "
        f"last answers {recovery:.1f} s after the last restart"
    )
    assert result.sent == len(CHATS) * 15
    assert result.lost == 0, (result.line(), result.unanswered)
    assert result.order_violations == 0, result.line()
    # A kill between Telegram's answer and its record leaves a send in doubt; that one, and
    # nothing else, may arrive twice.
    doubled = [example.removesuffix(" again") for example in result.examples if example.endswith(" again")]
    assert set(doubled) <= {f"chat {chat}: {text!r}" for chat, text in in_doubt}, (result.line(), in_doubt)
    stored = await fetch(database_url, "SELECT count(*) FROM messages WHERE role = 'user'")
    assert stored[0][0] == result.sent, "every message stored once"
