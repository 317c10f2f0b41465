"""The two connection pools a process keeps: bounded together, and healed when the server drops them."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.database import Database, connect
from storage.direct import PoolClosedError
from storage.errors import is_transient
from tests.postgres import admin_execute, unique_name


async def _backends(url: str) -> int:
    """Connections open to this test's database, seen from outside the process's pools."""
    outside = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        count = await outside.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(count)
    finally:
        await outside.close()


async def test_a_busy_process_opens_no_more_connections_than_its_pool_size(database_url: str) -> None:
    database = connect(database_url, pool_size=5)
    most = 0
    release = asyncio.Event()

    async def reply_path() -> None:
        async with database.raw() as connection:
            await connection.fetchval("SELECT 1")
            await release.wait()

    async def command() -> None:
        async with database.sessions() as session:
            await session.execute(text("SELECT 1"))
            await release.wait()

    try:
        tasks = [asyncio.create_task(reply_path()) for _ in range(20)]
        tasks += [asyncio.create_task(command()) for _ in range(10)]
        for _ in range(20):
            await asyncio.sleep(0.05)
            most = max(most, await _backends(database_url))
        release.set()
        await asyncio.gather(*tasks)
    finally:
        await database.close()
    assert 2 <= most <= 5


async def test_connections_the_server_dropped_are_replaced(db: Database, database_url: str) -> None:
    async with db.raw() as connection:
        before = await connection.fetchval("SELECT pg_backend_pid()")
    outside = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        assert await outside.fetchval("SELECT pg_terminate_backend($1)", before)
    finally:
        await outside.close()
    await asyncio.sleep(0.2)  # what a restart, a failover or an idle timeout leaves in the pool
    async with db.raw() as connection:
        after = await connection.fetchval("SELECT pg_backend_pid()")
        assert await connection.fetchval("SELECT 41 + 1") == 42
    assert after != before


async def test_the_reply_path_connects_with_the_options_the_url_carries(database_url: str) -> None:
    url = make_url(database_url)
    database = connect(
        url.update_query_dict({"ssl": "disable", "command_timeout": "30"}).render_as_string(hide_password=False),
        pool_size=4,
    )
    try:
        async with database.raw() as connection:
            assert await connection.fetchval("SELECT current_database()") == url.database
        async with database.sessions() as session:
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await database.close()


async def test_closing_does_not_wait_forever_for_a_connection_still_held(database_url: str) -> None:
    database = connect(database_url, pool_size=4)
    held = asyncio.Event()

    async def stuck() -> None:
        async with database.raw() as connection:
            await connection.fetchval("SELECT 1")
            held.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stuck())
    await held.wait()
    await asyncio.wait_for(database.direct.close(patience=0.5), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await database.engine.dispose()


async def test_a_connection_whose_statement_was_cut_off_is_not_used_again(database_url: str) -> None:
    database = connect(database_url, pool_size=4)
    try:
        async with database.raw() as connection:
            warm = await connection.fetchval("SELECT pg_backend_pid()")
        async with database.raw() as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == warm, "the warm connection is reused"

        async def slow() -> None:
            async with database.raw() as connection:
                await connection.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()  # a reply cancelled mid-statement, as on shutdown
        await asyncio.gather(task, return_exceptions=True)
        async with database.raw() as connection:
            after = await connection.fetchval("SELECT pg_backend_pid()")
            assert await connection.fetchval("SELECT 41 + 1") == 42
        assert after != warm
        await asyncio.sleep(0.3)
        assert await _backends(database_url) == 1, "the cut-off connection was closed, not left open"
    finally:
        await database.close()


async def test_many_blocks_share_few_connections_in_turn(database_url: str) -> None:
    database = connect(database_url, pool_size=4)  # three for the reply path
    seen: set[int] = set()

    async def statement(n: int) -> int:
        async with database.raw() as connection:
            seen.add(await connection.fetchval("SELECT pg_backend_pid()"))
            return int(await connection.fetchval("SELECT $1::int * 2", n))

    try:
        results = await asyncio.gather(*(statement(n) for n in range(50)))
    finally:
        await database.close()
    assert results == [n * 2 for n in range(50)]
    assert 1 <= len(seen) <= 3


async def test_spare_connections_are_closed_once_a_burst_is_over(database_url: str) -> None:
    database = connect(database_url, pool_size=8)
    database.direct._idle_lifetime = 0.2
    release = asyncio.Event()

    async def held() -> None:
        async with database.raw() as connection:
            await connection.fetchval("SELECT 1")
            await release.wait()

    try:
        tasks = [asyncio.create_task(held()) for _ in range(5)]
        await asyncio.sleep(0.5)
        assert await _backends(database_url) == 5
        release.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.3)
        async with database.raw() as connection:  # the next statement after the burst
            await connection.fetchval("SELECT 1")
        await asyncio.sleep(0.3)
        assert await _backends(database_url) == 1
    finally:
        await database.close()


async def test_after_close_the_reply_path_refuses_new_statements(database_url: str) -> None:
    database = connect(database_url, pool_size=4)
    async with database.raw() as connection:
        await connection.fetchval("SELECT 1")
    await database.close()
    with pytest.raises(PoolClosedError):
        async with database.raw() as connection:
            await connection.fetchval("SELECT 1")
    assert is_transient(PoolClosedError("stopping")), "an update then waits, as for any outage"
    assert await _backends(database_url) == 0


def _as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


async def test_a_server_that_is_full_makes_replies_share_the_connections_the_process_has(database_url: str) -> None:
    """More replicas than the server was sized for: each gets fewer connections than its pool
    size. The replies queue for the ones it got rather than fail (which left their chats to the
    healer, 15-30 s later, in a benchmark with seven bots on a server of 100 connections)."""
    role = unique_name("aif_limited")
    await admin_execute(database_url, f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
    database = connect(_as_role(database_url, role), pool_size=9)
    seen: set[int] = set()

    async def reply_statement(n: int) -> int:
        async with database.raw() as connection:
            seen.add(await connection.fetchval("SELECT pg_backend_pid()"))
            await asyncio.sleep(0.02)  # long enough for all of them to want a connection at once
            return int(await connection.fetchval("SELECT $1::int * 2", n))

    try:
        results = await asyncio.gather(*(reply_statement(n) for n in range(40)))
        again = await asyncio.gather(*(reply_statement(n) for n in range(40)))  # and after the pause
    finally:
        await database.close()
        await admin_execute(database_url, f"DROP ROLE {role}")
    assert results == again == [n * 2 for n in range(40)]
    assert 1 <= len(seen) <= 2  # the role's two, shared


async def test_a_process_the_server_refuses_any_connection_gets_the_error(database_url: str) -> None:
    role = unique_name("aif_refused")
    await admin_execute(database_url, f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    database = connect(_as_role(database_url, role), pool_size=4)
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError):
            async with database.raw() as connection:
                await connection.fetchval("SELECT 1")
    finally:
        await database.close()
        await admin_execute(database_url, f"DROP ROLE {role}")
