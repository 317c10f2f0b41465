"""The one way aifriend waits to try again: tenacity, exponential backoff with jitter, capped.

Every retried operation is bounded in time by a named setting (`patience`), and what is worth
retrying is decided at the boundary it crosses (`storage.errors`, `app.telegram.errors`,
`llm.tgi`): this module only says how long to wait and how long to keep trying. The first try
is made directly; tenacity takes over only once it failed in a way worth another.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    stop_never,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

log = structlog.get_logger(__name__)
T = TypeVar("T")

FIRST_WAIT = 0.5  # seconds before the second try
LONGEST_WAIT = 30.0  # no single wait is longer than this


def backoff(attempt: int) -> float:
    """How long to wait after the `attempt`-th failure, for a schedule kept outside the process (the
    outbox's next attempt): the same curve as `retrying`, 0.5 s, 1 s, 2 s ... up to 30 s, jittered."""
    return min(LONGEST_WAIT, FIRST_WAIT * 2.0 ** max(0, attempt - 1) + random.uniform(0, FIRST_WAIT))


class _StopWhenSet(stop_base):
    """Stop retrying once the process is told to stop."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event.is_set()


def retrying(
    what: str,
    *,
    retry_on: Callable[[BaseException], bool],
    patience: float,
    attempts: int | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncRetrying:
    """`async for attempt in retrying(...): with attempt: ...` tries while `retry_on` says the failure
    is worth it, for at most `patience` seconds (and `attempts` tries, and until `stop` is set);
    each wait is logged as `what` with the failure and the delay. The last failure is raised as it is."""

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    def logged(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.warning(
            what,
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 2),
            error=f"{failure.__class__.__name__}: {str(failure)[:300]}" if failure else None,
        )

    return AsyncRetrying(
        retry=retry_if_exception(retry_on),
        wait=wait_exponential_jitter(multiplier=FIRST_WAIT, max=LONGEST_WAIT, jitter=FIRST_WAIT),
        stop=stop_any(
            stop_after_delay(patience),
            stop_after_attempt(attempts) if attempts else stop_never,
            _StopWhenSet(stop) if stop is not None else stop_never,
        ),
        sleep=sleep,
        before_sleep=logged,
        reraise=True,
    )


async def retried(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    retry_on: Callable[[BaseException], bool],
    patience: float,
    attempts: int | None = None,
    stop: asyncio.Event | None = None,
) -> T:
    """`call()`, tried again as `retrying` says; the first try costs nothing of tenacity's."""
    try:
        return await call()
    except Exception as failure:
        if not retry_on(failure) or attempts == 1 or (stop is not None and stop.is_set()):
            raise
        log.warning(what, attempt=1, retry_in=FIRST_WAIT, error=f"{failure.__class__.__name__}: {str(failure)[:300]}")
    if stop is None:
        await asyncio.sleep(FIRST_WAIT)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), FIRST_WAIT)
    again = retrying(
        what,
        retry_on=retry_on,
        patience=max(0.0, patience - FIRST_WAIT),
        attempts=attempts - 1 if attempts else None,
        stop=stop,
    )

    async def attempt() -> T:  # tenacity awaits only what it sees is a coroutine function
        return await call()

    return await again(attempt)
