"""Long polling that confirms an update only once it is stored (or set aside), serving chats concurrently.

aiogram's own loop either handles updates one by one, or as tasks that Telegram already
considers delivered when the next `getUpdates` goes out (a crash then loses them); and it
parses a whole batch at once, so one malformed update fails them all. Here the batch comes
back as raw JSON through aiogram's session (its errors, its retries after 429) and each update
is read on its own. Each batch is handled with one sequential lane per chat (a chat's messages
are stored in order) and all chats at once; the offset moves past the batch once every update
in it is handled, ignored or set aside. Whatever the network returns (an HTML error page, a
reset, a timeout) is waited out with the retry policy, up to OUTAGE_PATIENCE; a refused token
stops the process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.methods.base import TelegramMethod

from app.retry import retried
from app.telegram.errors import TokenRefusedError, worth_retrying
from app.telegram.updates import Incoming, UpdateIntake

log = structlog.get_logger(__name__)

POLL_TIMEOUT = 10


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


async def poll(bot: Bot, intake: UpdateIntake, allowed: list[str], stop: asyncio.Event, *, patience: float) -> None:
    """Until `stop`: fetch, handle, confirm. Telegram unreachable for longer than `patience` ends it
    with the last error (the process's supervisor starts it again)."""
    offset: int | None = None
    while not stop.is_set():
        raw_updates = await _fetch(
            bot, GetRawUpdates(offset=offset, timeout=POLL_TIMEOUT, allowed_updates=allowed), stop, patience
        )
        if not raw_updates:
            continue
        items = [intake.read(raw) for raw in raw_updates]
        if await handle_batch(intake, items):
            offset = next_offset(items, offset)


async def _fetch(bot: Bot, request: GetRawUpdates, stop: asyncio.Event, patience: float) -> list[Any]:
    """One `getUpdates`, tried again while it fails; empty once `stop` is set."""
    try:
        return await retried(
            lambda: _until_stopped(bot(request, request_timeout=POLL_TIMEOUT + 15), stop),
            "get_updates_failed",
            retry_on=worth_retrying,
            patience=patience,
            stop=stop,
        )
    except TelegramUnauthorizedError:
        raise TokenRefusedError() from None
    except Exception:
        if stop.is_set():
            return []
        raise


async def _until_stopped(call: Any, stop: asyncio.Event) -> list[Any]:
    """A long poll, called off as soon as the process is told to stop."""
    fetch = asyncio.ensure_future(call)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not fetch.done():
        fetch.cancel()
        await asyncio.gather(fetch, return_exceptions=True)
        return []
    result: list[Any] = fetch.result()
    return result
