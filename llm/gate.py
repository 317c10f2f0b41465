"""Model requests prepared ahead, held until they may leave.

The reply to a message may be prepared (its prompt built, the model client's request made
ready) while the message is still being stored; but nothing of it may leave the process before
the message is stored. Requests made inside `held_until(release)` wait, in the transport,
until `release` is done; the caller cancels the work instead if the store did not happen.
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
