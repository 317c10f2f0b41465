"""Updates set aside: what could not be read or handled, kept for an operator to look at."""

from __future__ import annotations

from storage.database import Executor
from storage.errors import ConflictError
from storage.sql import Statement

MAX_RAW_CHARS = 64_000

# Once per update id (a redelivery of an update already set aside adds nothing), and the id is
# recorded as taken in, so the update is never handled afterwards either.
_ADD = Statement("""
    WITH known AS (
        SELECT 1 FROM dead_letters WHERE update_id = CAST(:update_id AS bigint)
    ), taken AS (
        INSERT INTO processed_updates (update_id, chat_id)
        SELECT CAST(:update_id AS bigint), CAST(:chat_id AS bigint)
         WHERE CAST(:update_id AS bigint) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM known)
        ON CONFLICT DO NOTHING
    )
    INSERT INTO dead_letters (update_id, chat_id, error, raw, attempts)
    SELECT CAST(:update_id AS bigint), CAST(:chat_id AS bigint), :error, :raw, :attempts
     WHERE NOT EXISTS (SELECT 1 FROM known)
    RETURNING id
""")
_COUNT = Statement("SELECT count(*) FROM dead_letters")


class DeadLetterRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def add(self, *, update_id: int | None, chat_id: int | None, error: str, raw: str, attempts: int) -> bool:
        """Set an update aside; False when it was set aside before (a redelivery)."""
        try:
            added = await self.executor.fetchval(
                _ADD,
                update_id=update_id,
                chat_id=chat_id,
                error=error[:2000],
                raw=raw[:MAX_RAW_CHARS],
                attempts=attempts,
            )
        except ConflictError:  # set aside at the same moment by another delivery of it
            return False
        return added is not None

    async def count(self) -> int:
        return int(await self.executor.fetchval(_COUNT))
