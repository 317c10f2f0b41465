"""Model requests prepared ahead, held until they may leave.

The reply to a message may be prepared (its prompt built, the model client's request made
ready) while the message is still being stored; but nothing of it may leave the process before
the message is stored. Requests made inside `held_until(release)` wait, in the transport,
until `release` is done; the caller cancels the work instead if the store did not happen.
A backend's deadline starts when they are released (`deadline_after_release`): the time a store
takes is not the model's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_hold: ContextVar[asyncio.Future[Any] | None] = ContextVar("llm_requests_held_until", default=None)


@contextlib.contextmanager
def held_until(release: asyncio.Future[Any]) -> Iterator[None]:
    """Requests to the model made in this block (and in tasks started from it) wait for `release`."""
    token = _hold.set(release)
    try:
        yield
    finally:
        _hold.reset(token)


async def released() -> None:
    """Return once this context's requests may leave (at once when nothing holds them)."""
    release = _hold.get()
    if release is not None and not release.done():
        # Awaited directly (no shield): the waiting request is woken at the very next turn of the loop.
        await release


@contextlib.contextmanager
def deadline_after_release(limit: asyncio.Timeout, seconds: float) -> Iterator[None]:
    """`limit` bounds the block from the release of this context's requests: while they are held
    (their message still being stored) it does not run, and then it has all of `seconds`."""
    release = _hold.get()
    if release is None or release.done():
        yield
        return
    loop = asyncio.get_running_loop()
    limit.reschedule(None)

    def released_now(_: asyncio.Future[Any]) -> None:
        if not limit.expired():
            limit.reschedule(loop.time() + seconds)

    release.add_done_callback(released_now)
    try:
        yield
    finally:
        release.remove_done_callback(released_now)
