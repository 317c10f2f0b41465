"""Long polling that confirms an update only once it is stored, yet serves chats concurrently.

aiogram's own loop either handles updates one by one, or as tasks that Telegram already
considers delivered when the next `getUpdates` goes out (a crash then loses them). Here
each batch is handled with one sequential lane per chat (so a chat's messages are stored
in order) and all chats at once; the offset moves past the batch only when every update
in it has been handled. A batch that failed is fetched again; the update ids recorded in
the database make the second pass a no-op for what was already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Update

from app.telegram.middlewares import chat_of

log = structlog.get_logger()

POLL_TIMEOUT = 10
RETRY_PAUSE = 1.0


async def _lane(bot: Bot, dispatcher: Dispatcher, updates: Sequence[Update]) -> None:
    for update in updates:
        await dispatcher.feed_update(bot, update)


async def handle_batch(bot: Bot, dispatcher: Dispatcher, updates: Sequence[Update]) -> None:
    lanes: dict[int | None, list[Update]] = defaultdict(list)
    for update in updates:
        lanes[chat_of(update)].append(update)
    results = await asyncio.gather(*(_lane(bot, dispatcher, lane) for lane in lanes.values()), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


async def poll(bot: Bot, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    allowed = dispatcher.resolve_used_update_types()
    offset: int | None = None
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            fetch = asyncio.create_task(bot.get_updates(offset=offset, timeout=POLL_TIMEOUT, allowed_updates=allowed))
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, TelegramAPIError):
                    await fetch
                return
            try:
                updates = fetch.result()
            except TelegramAPIError as exc:
                log.warning("get_updates_failed", error=str(exc))
                await asyncio.sleep(RETRY_PAUSE)
                continue
            if not updates:
                continue
            try:
                await handle_batch(bot, dispatcher, updates)
            except Exception:
                log.exception("update_batch_failed", updates=len(updates))
                await asyncio.sleep(RETRY_PAUSE)
                continue
            offset = updates[-1].update_id + 1
    finally:
        stopping.cancel()
