"""Simulated users for the fault suite: each writes numbered messages at its own pace."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable

from app.emulators.telegram import TelegramEmulator
from tests.faults.tally import Tally, numbered, tally
from tests.waiting import held_within


async def chatter(
    telegram: TelegramEmulator, chats: Iterable[int], per_chat: int, every: float, sent: dict[int, int]
) -> None:
    """Each chat sends `per_chat` numbered messages, one every `every` seconds (with jitter)."""

    async def user(chat: int) -> None:
        await asyncio.sleep(random.uniform(0, every))
        for n in range(per_chat):
            telegram.user_sends(chat, numbered(n, chat))
            sent[chat] = n + 1
            await asyncio.sleep(every * random.uniform(0.7, 1.3))

    await asyncio.gather(*(user(chat) for chat in chats))


async def settle(telegram: TelegramEmulator, sent: dict[int, int], patience: float) -> tuple[Tally, float]:
    """Wait until every message is answered (or `patience` runs out); the tally and the seconds waited."""
    started = time.monotonic()
    # what is still lost then is in the tally, for the caller to assert
    await held_within(lambda: not tally(telegram, sent).lost, patience)
    return tally(telegram, sent), time.monotonic() - started
