"""After start-up, the heap is settled so the garbage collector stops walking it.

Importing aiogram, pydantic, SQLAlchemy and the openai client leaves a few hundred thousand
long-lived objects. CPython's oldest-generation collection walks all of them, and it runs every
few tens of thousands of surviving allocations: a reply caught behind it waits that long.
Frozen objects are never walked again, so those pauses shrink to what was allocated since
start-up (docs/performance.md).
"""

from __future__ import annotations

import gc
import time

import structlog

log = structlog.get_logger(__name__)


def settle_heap() -> None:
    """Collect what start-up left as garbage, then freeze the rest (modules, classes, settings)."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "heap_settled", frozen_objects=gc.get_freeze_count(), took_ms=round((time.perf_counter() - started) * 1000, 1)
    )
