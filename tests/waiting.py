"""Waiting in tests: for a condition, with a deadline, never for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

Condition = Callable[[], bool | Awaitable[bool]]

# How long a wait that includes starting an aifriend process may take before it fails: a start
# imports aiogram and the openai client, which takes seconds on an idle machine and many times
# that on a busy CI runner. Only a failure waits this long.
START_UP = 120.0


async def held_within(condition: Condition, within: float, every: float = 0.02) -> bool:
    """Whether `condition` held at some point in the next `within` seconds (returns as soon as it does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(every)


async def until(condition: Condition, *, within: float = 15.0, every: float = 0.02, what: str = "") -> None:
    """Return as soon as `condition` holds; fail if it does not within `within` seconds."""
    if not await held_within(condition, within, every):
        raise AssertionError(f"not within {within:g} s: {what or condition}")
