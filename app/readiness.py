"""The checks behind `/readyz`: each answers (ok, a short word for the operator)."""

from __future__ import annotations

import asyncio

from app.metrics import Check, Metrics
from llm.types import ChatModel
from migrations.schema import head_revision
from storage.database import Database
from storage.errors import DatabaseError

PROBE_TIMEOUT = 3.0


def database_check(database: Database) -> Check:
    """The database answers within a few seconds and its schema is the one this code needs."""
    head = head_revision()

    async def check() -> tuple[bool, str]:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                current = await database.schema_revision()
        except TimeoutError:
            return False, f"no answer within {PROBE_TIMEOUT:g} s"
        except DatabaseError as exc:
            return False, str(exc)[:200]
        if current != head:
            return False, f"schema at {current}, this version needs {head}: run `aifriend migrate`"
        return True, f"schema at {head}"

    return check


def model_check(model: ChatModel, metrics: Metrics) -> Check:
    """Shown, never required: with the model down users still get the fallback line."""

    async def check() -> tuple[bool, str]:
        ok, detail = await model.health()
        metrics.set("aifriend_model_up", 1 if ok else 0)
        return ok, detail

    return check


class Stage:
    """A named step a process reaches once (taking updates, sweeping); not ready before it."""

    def __init__(self, name: str, waiting: str) -> None:
        self.name = name
        self.detail = waiting
        self.reached = False

    def reach(self, detail: str) -> None:
        self.detail, self.reached = detail, True

    async def check(self) -> tuple[bool, str]:
        return self.reached, self.detail
