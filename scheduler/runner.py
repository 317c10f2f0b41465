"""APScheduler runs the check-in sweep on an interval; the database keeps workers from colliding."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from app.services.checkins import CheckinService
from app.services.outbox import Outbox

log = structlog.get_logger()


def claim_lease(every: timedelta) -> timedelta:
    """How long a claim lasts: several sweeps, and long enough to write a batch of check-ins."""
    return max(every * 4, timedelta(seconds=30))


def worker_name(role: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


@contextlib.asynccontextmanager
async def sweeping(
    checkins: CheckinService, outbox: Outbox, every: timedelta, *, grace: float = 20.0
) -> AsyncIterator[AsyncIOScheduler]:
    """Sweep now and then every `every`, one sweep at a time in this process, until the block ends;
    a sweep in flight then gets `grace` seconds to finish what it claimed (its claims expire otherwise)."""

    running = asyncio.Lock()

    async def sweep() -> None:
        structlog.contextvars.clear_contextvars()
        async with running:
            try:
                await checkins.sweep(outbox)
            except Exception:
                log.exception("checkin_sweep_failed")

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        sweep,
        "interval",
        seconds=every.total_seconds(),
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        id="checkin_sweep",
    )
    scheduler.start()
    log.info("scheduler_started", worker=checkins.worker, every_seconds=every.total_seconds())
    try:
        yield scheduler
    finally:
        scheduler.pause()
        try:  # let a sweep in flight finish what it claimed; shutdown would cancel it
            await asyncio.wait_for(running.acquire(), grace)
            running.release()
        except TimeoutError:
            log.warning("checkin_sweep_cut_short", grace_seconds=grace)
        scheduler.shutdown(wait=False)
        try:
            await checkins.release_claims()
        except Exception as exc:  # the database may be gone too: the claims then expire with their lease
            log.warning("checkin_claims_not_released", error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
