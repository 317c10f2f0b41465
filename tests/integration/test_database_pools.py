"""The process's connection pool (asyncpg's): bounded, healed when the server drops connections,
closed on time, and patient with a server that is full."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from storage.database import Database, connect
from storage.errors import DatabaseUnavailableError
from storage.sql import Statement
from tests.postgres import admin_execute, fetch, unique_name
from tests.waiting import until

PID = Statement("SELECT pg_backend_pid()")
DOUBLE = Statement("SELECT CAST(:n AS integer) * 2")


async def _backends(url: str) -> int:
    """Connections open to this test's database, seen from outside the process's pool."""
    outside = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        count = await outside.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(count)
    finally:
        await outside.close()


async def test_a_busy_process_opens_no_more_connections_than_its_pool_size(database_url: str) -> None:
    database = await connect(database_url, pool_size=5)
    most = 0
    release = asyncio.Event()

    async def unit_of_work() -> None:
        async with database.transaction() as tx:
            await tx.fetchval(PID)
            await release.wait()

    try:
        tasks = [asyncio.create_task(unit_of_work()) for _ in range(30)]
        await until(lambda: _backends_at_least(database_url, 5), what="the pool to fill")
        for _ in range(5):  # 25 units still wait for a connection: none is opened for them
            most = max(most, await _backends(database_url))
        release.set()
        await asyncio.gather(*tasks)
    finally:
        await database.close()
    assert most == 5


async def test_connections_the_server_dropped_are_replaced(db: Database, database_url: str) -> None:
    before = await db.fetchval(PID)
    outside = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        assert await outside.fetchval("SELECT pg_terminate_backend($1)", before)
    finally:
        await outside.close()
    # what a restart, a failover or an idle timeout leaves in the pool: a connection that is gone
    await until(lambda: _gone(database_url, before), what="the backend to be gone")
    assert await db.fetchval(DOUBLE, n=21) == 42
    assert await db.fetchval(PID) != before


async def test_the_pool_connects_with_the_options_the_url_carries(database_url: str) -> None:
    url = make_url(database_url)
    options = url.update_query_dict({"ssl": "disable", "command_timeout": "30"}).render_as_string(hide_password=False)
    database = await connect(options, pool_size=4)
    try:
        assert await database.fetchval(Statement("SELECT current_database()")) == url.database
    finally:
        await database.close()


async def test_closing_does_not_wait_forever_for_a_connection_still_held(database_url: str) -> None:
    database = await connect(database_url, pool_size=4)
    held = asyncio.Event()

    async def stuck() -> None:
        async with database.transaction() as tx:
            await tx.fetchval(PID)
            held.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stuck())
    await held.wait()
    await asyncio.wait_for(database.close(patience=0.5), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_statement_cut_off_leaves_the_pool_usable_and_nothing_running(database_url: str) -> None:
    """A reply cancelled mid-statement (as on shutdown): the server stops the statement, and the
    next statement is answered."""
    database = await connect(database_url, pool_size=1)
    try:
        task = asyncio.create_task(database.execute(Statement("SELECT pg_sleep(30)")))
        await until(lambda: _sleeping(database_url, running=True), what="the statement to run")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await database.fetchval(DOUBLE, n=21) == 42
        await until(lambda: _sleeping(database_url, running=False), what="the server to stop the statement")
    finally:
        await database.close()


async def test_many_statements_share_few_connections_in_turn(database_url: str) -> None:
    database = await connect(database_url, pool_size=3)
    seen: set[int] = set()

    async def statement(n: int) -> int:
        async with database.transaction() as tx:
            seen.add(await tx.fetchval(PID))
            return int(await tx.fetchval(DOUBLE, n=n))

    try:
        results = await asyncio.gather(*(statement(n) for n in range(50)))
    finally:
        await database.close()
    assert results == [n * 2 for n in range(50)]
    assert 1 <= len(seen) <= 3


async def test_spare_connections_are_closed_once_a_burst_is_over(database_url: str) -> None:
    database = await connect(database_url, pool_size=8, idle_lifetime=0.2)
    release = asyncio.Event()

    async def held() -> None:
        async with database.transaction() as tx:
            await tx.fetchval(PID)
            await release.wait()

    try:
        tasks = [asyncio.create_task(held()) for _ in range(5)]
        await until(lambda: _backends_at_least(database_url, 5), what="five connections")
        release.set()
        await asyncio.gather(*tasks)
        await until(lambda: _backends_at_most(database_url, 1), what="the spare connections to close")
    finally:
        await database.close()


async def test_after_close_new_statements_are_refused_as_an_outage(database_url: str) -> None:
    database = await connect(database_url, pool_size=4)
    await database.fetchval(PID)
    await database.close()
    with pytest.raises(DatabaseUnavailableError):
        await database.fetchval(PID)
    assert await _backends(database_url) == 0


async def _backends_at_least(url: str, count: int) -> bool:
    return await _backends(url) >= count


async def _backends_at_most(url: str, count: int) -> bool:
    return await _backends(url) <= count


async def _gone(url: str, pid: int) -> bool:
    return not await fetch(url, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)


async def _sleeping(url: str, *, running: bool) -> bool:
    """Whether the server is (or is no longer) running the test's pg_sleep."""
    rows = await fetch(
        url, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'"
    )
    return bool(rows[0][0]) is running


def _as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


async def test_a_server_that_is_full_makes_statements_share_the_connections_the_process_has(database_url: str) -> None:
    """More replicas than the server was sized for: each gets fewer connections than its pool
    size. The replies queue for the ones it got rather than fail (which left their chats to the
    healer, 15-30 s later, in a benchmark with seven bots on a server of 100 connections)."""
    role = unique_name("aif_limited")
    await admin_execute(database_url, f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
    database = await connect(_as_role(database_url, role), pool_size=9)
    seen: set[int] = set()

    async def reply_statement(n: int) -> int:
        async with database.transaction() as tx:
            seen.add(await tx.fetchval(PID))
            await asyncio.sleep(0.02)  # long enough for all of them to want a connection at once
            return int(await tx.fetchval(DOUBLE, n=n))

    try:
        results = await asyncio.gather(*(reply_statement(n) for n in range(40)))
        again = await asyncio.gather(*(reply_statement(n) for n in range(40)))
    finally:
        await database.close()
        await admin_execute(database_url, f"DROP ROLE {role}")
    assert results == again == [n * 2 for n in range(40)]
    assert 1 <= len(seen) <= 2  # the role's two, shared


async def test_a_process_the_server_refuses_any_connection_gets_the_error(database_url: str) -> None:
    role = unique_name("aif_refused")
    await admin_execute(database_url, f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    database = await connect(_as_role(database_url, role), pool_size=4, connect_patience=0.5)
    try:
        with pytest.raises(DatabaseUnavailableError, match="TooManyConnections"):
            await database.fetchval(PID)
    finally:
        await database.close()
        await admin_execute(database_url, f"DROP ROLE {role}")
