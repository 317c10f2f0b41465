"""Periodic work, all of it on one APScheduler: each job runs now and then every `every`, one run
at a time per process; the database keeps processes from colliding (claims and leases).

The jobs are plain coroutines handed in by the caller, so this package knows nothing of what
they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[], Awaitable[object]]


class _Guarded:
    """A job's runs, one at a time; a failure is logged once until the job works again (a database
    outage would otherwise log every second)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.running = asyncio.Lock()
        self.failing = False

    async def run(self) -> None:
        structlog.contextvars.clear_contextvars()
        async with self.running:
            try:
                await self.job.run()
            except Exception as exc:
                if not self.failing:
                    log.warning("job_failed", job=self.job.name, error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
                self.failing = True
                return
            if self.failing:
                log.info("job_recovered", job=self.job.name)
            self.failing = False


class Running:
    """The scheduler of a `running` block; `stop` ends it at the moment the caller chooses."""

    def __init__(self, scheduler: AsyncIOScheduler, jobs: list[_Guarded]) -> None:
        self._scheduler = scheduler
        self._jobs = jobs
        self._stopped = False

    async def stop(self, grace: float) -> None:
        """No new runs; runs in flight get `grace` seconds in all to finish what they started (a
        check-in sweep's claims expire otherwise) before they are cut short."""
        if self._stopped:
            return
        self._stopped = True
        self._scheduler.pause()
        deadline = time.monotonic() + grace
        for job in self._jobs:
            try:  # shutdown would cancel a run in flight
                await asyncio.wait_for(job.running.acquire(), max(0.0, deadline - time.monotonic()))
                job.running.release()
            except TimeoutError:
                log.warning("job_cut_short", job=job.job.name, grace_seconds=grace)
        self._scheduler.shutdown(wait=False)


@contextlib.asynccontextmanager
async def running(jobs: Sequence[Job]) -> AsyncIterator[Running]:
    """The jobs run until `stop` is called or the block ends."""
    guarded = [_Guarded(job) for job in jobs]
    scheduler = AsyncIOScheduler(timezone=UTC)
    for job in guarded:
        scheduler.add_job(
            job.run,
            "interval",
            seconds=job.job.every.total_seconds(),
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            id=job.job.name,
        )
    scheduler.start()
    log.info("scheduler_started", jobs={job.name: job.every.total_seconds() for job in jobs})
    handle = Running(scheduler, guarded)
    try:
        yield handle
    finally:
        await handle.stop(0)


def claim_lease(every: timedelta) -> timedelta:
    """How long a check-in claim lasts: several sweeps, and long enough to write a batch of check-ins."""
    return max(every * 4, timedelta(seconds=30))
