"""Long polling that confirms an update only once it is stored (or set aside), serving chats concurrently.

aiogram's own loop either handles updates one by one, or as tasks that Telegram already
considers delivered when the next `getUpdates` goes out (a crash then loses them); and it
parses a whole batch at once, so one malformed update fails them all. Here the batch comes
back as raw JSON through aiogram's session (its errors, its retries after 429) and each update
is read on its own. Each batch is handled with one sequential lane per chat (a chat's messages
are stored in order) and all chats at once; the offset moves past the batch once every update
in it is handled, ignored or set aside. Nothing the network returns (an HTML error page, a
reset, a timeout) stops the loop: it waits, longer each time up to half a minute, and asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog
from aiogram import Bot
from aiogram.methods.base import TelegramMethod

from app.telegram.intake import Incoming, UpdateIntake

log = structlog.get_logger()

POLL_TIMEOUT = 10
RETRY_CAP = 30.0


class GetRawUpdates(TelegramMethod[list[Any]]):
    """`getUpdates`, answered as plain JSON: each update is read by the intake on its own."""

    __returning__ = list[Any]
    __api_method__ = "getUpdates"

    offset: int | None = None
    limit: int | None = None
    timeout: int | None = None
    allowed_updates: list[str] | None = None


async def _lane(intake: UpdateIntake, items: Sequence[Incoming]) -> bool:
    for item in items:
        if not await intake.handle(item):
            return False
    return True


async def handle_batch(intake: UpdateIntake, items: Sequence[Incoming]) -> bool:
    """True when every update is done with; chats in parallel, each chat in order."""
    lanes: dict[object, list[Incoming]] = defaultdict(list)
    for index, item in enumerate(items):
        lanes[item.chat_id if item.chat_id is not None else ("alone", index)].append(item)
    results = await asyncio.gather(*(_lane(intake, lane) for lane in lanes.values()))
    return all(results)


def next_offset(items: Sequence[Incoming], offset: int | None) -> int | None:
    ids = [item.update_id for item in items if item.update_id is not None]
    return max(ids) + 1 if ids else offset


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def poll(bot: Bot, intake: UpdateIntake, allowed: list[str], stop: asyncio.Event) -> None:
    offset: int | None = None
    failures = 0
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            request = GetRawUpdates(offset=offset, timeout=POLL_TIMEOUT, allowed_updates=allowed)
            fetch = asyncio.create_task(bot(request, request_timeout=POLL_TIMEOUT + 15))
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                fetch.cancel()
                with contextlib.suppress(BaseException):
                    await fetch
                return
            try:
                raw_updates = fetch.result()
            except Exception as exc:
                failures += 1
                delay = min(RETRY_CAP, 0.5 * 2**failures)
                log.warning(
                    "get_updates_failed",
                    error=f"{exc.__class__.__name__}: {str(exc)[:300]}",
                    retry_in=delay,
                    failures=failures,
                )
                await _pause(stop, delay)
                continue
            if failures:
                log.info("get_updates_recovered", after_failures=failures)
            failures = 0
            if not raw_updates:
                continue
            items = [intake.read(raw) for raw in raw_updates]
            if await handle_batch(intake, items):
                offset = next_offset(items, offset)
    finally:
        stopping.cancel()
