"""The one retry policy: what is worth another try gets one, and the try after a failure really runs."""

from __future__ import annotations

import asyncio

import pytest

from app.retry import retried


class Flaky:
    """Fails the first `failures` calls with `error`, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "answer"


async def test_a_call_that_fails_once_is_tried_again_and_its_answer_returned() -> None:
    flaky = Flaky(1, ConnectionResetError("gone"))
    answer = await retried(lambda: flaky(), "call_failed", retry_on=lambda e: isinstance(e, OSError), patience=5)
    assert (answer, flaky.calls) == ("answer", 2)


async def test_a_failure_not_worth_retrying_is_raised_at_once() -> None:
    flaky = Flaky(1, ValueError("bad input"))
    with pytest.raises(ValueError):
        await retried(flaky, "call_failed", retry_on=lambda e: isinstance(e, OSError), patience=5)
    assert flaky.calls == 1


async def test_the_last_failure_is_raised_once_attempts_are_spent() -> None:
    flaky = Flaky(5, ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await retried(flaky, "call_failed", retry_on=lambda e: True, patience=30, attempts=2)
    assert flaky.calls == 2


async def test_a_stopping_process_does_not_try_again() -> None:
    stop = asyncio.Event()
    stop.set()
    flaky = Flaky(1, ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await retried(flaky, "call_failed", retry_on=lambda e: True, patience=30, stop=stop)
    assert flaky.calls == 1
