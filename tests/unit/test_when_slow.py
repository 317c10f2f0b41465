"""WhenSlow: the typing indicator's and the lease's work starts only for a block that takes long.

A timer is tested by letting time pass: the sleeps inside the blocks are the blocks' durations,
the input; what is expected to happen is waited for (`until`)."""

from __future__ import annotations

import asyncio

from app.services.when_slow import WhenSlow
from tests.waiting import until


class Beats:
    def __init__(self) -> None:
        self.count = 0

    async def work(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0.02)


async def test_a_block_that_ends_sooner_never_starts_the_work() -> None:
    beats = Beats()
    async with WhenSlow(0.1, beats.work):
        await asyncio.sleep(0.03)
    await asyncio.sleep(0.15)
    assert beats.count == 0


async def test_a_slow_block_runs_the_work_from_the_delay_until_it_ends() -> None:
    beats = Beats()
    async with WhenSlow(0.05, beats.work):
        await asyncio.sleep(0.04)
        assert beats.count == 0, "not before the delay"
        await until(lambda: beats.count >= 3, what="the work repeated while the block runs")
    ended = beats.count
    await asyncio.sleep(0.1)
    assert beats.count == ended, "stopped with the block"


async def test_stop_ends_the_work_while_the_block_goes_on() -> None:
    beats = Beats()
    slow = WhenSlow(0.01, beats.work)
    async with slow:
        await until(lambda: beats.count >= 1, what="the work to start")
        await slow.stop()
        stopped = beats.count
        assert stopped >= 1
        await asyncio.sleep(0.1)
        assert beats.count == stopped
