"""What a database error says, where an operator will read it: never what the user wrote."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest

from storage.database import Database
from storage.errors import DatabaseError
from storage.sql import Statement


async def test_a_failed_statement_does_not_carry_user_text_into_its_error(db: Database) -> None:
    words = "my secret diary entry about Alex"
    with pytest.raises(DatabaseError) as failure:
        async with db.transaction() as tx:
            await tx.fetchval(Statement("SELECT CAST(:words AS integer)"), words=words)
    assert words in str(failure.value.__cause__)  # asyncpg echoes the value: what storage raises must not
    assert words not in str(failure.value) and "invalid input" in str(failure.value)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT CAST(:words AS integer)",
        "SELECT CAST(CAST(:words AS text) AS integer)",
        "SELECT CAST(CAST(:words AS text) AS date)",
    ],
)
async def test_logged_database_errors_hide_values(db: Database, statement: str) -> None:
    words = "my secret diary entry about Alex"
    code = f"""
        import asyncio
        import structlog
        from app.logging import configure_logging
        from storage.database import connect
        from storage.sql import Statement
        configure_logging(fmt="json")
        async def main():
            database = await connect({db.url!r})
            try:
                await database.fetchval(Statement({statement!r}), words={words!r})
            except Exception as exc:
                structlog.get_logger().warning("failed", error=str(exc))
                structlog.get_logger().exception("failed")
            await database.close()
        asyncio.run(main())
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(code), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    logged = err.decode()
    assert process.returncode == 0 and '"error"' in logged and "Traceback" in logged, logged
    assert "Alex" not in logged and "value hidden" in logged
