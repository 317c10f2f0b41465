"""The database of one process: asyncpg's pool, single statements, and transactions.

Everything aifriend stores goes through here, in one of two ways, both taking the same
statements (`storage.sql.Statement`) and giving back rows by name:

- `database.fetch(...)` and friends run one statement that commits by itself. Most of the reply
  path is written as such statements (data-modifying CTEs), so it holds no transaction open.
- `async with database.transaction() as tx:` several statements that commit together.

Repositories take either (`Executor`), so the same query serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from storage.embedded import embedded_database_url
from storage.errors import translate
from storage.sql import Row, Statement, connect_arguments

IDLE_LIFETIME = 300.0  # seconds a spare connection is kept once a burst is over
CLOSE_PATIENCE = 5.0  # seconds `close` waits for connections still in use before cutting them


class Executor(Protocol):
    """Where a repository's statements run: the database (each statement on its own) or a transaction."""

    async def fetch(self, statement: Statement, /, **values: Any) -> list[Row]: ...

    async def fetchrow(self, statement: Statement, /, **values: Any) -> Row | None: ...

    async def fetchval(self, statement: Statement, /, **values: Any) -> Any: ...

    async def execute(self, statement: Statement, /, **values: Any) -> str: ...


class _Statements:
    """The four ways to run a statement on a connection, each failure translated (`storage.errors`)."""

    async def _run(self, method: str, statement: Statement, values: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def fetch(self, statement: Statement, /, **values: Any) -> list[Row]:
        rows: list[Row] = await self._run("fetch", statement, values)
        return rows

    async def fetchrow(self, statement: Statement, /, **values: Any) -> Row | None:
        row: Row | None = await self._run("fetchrow", statement, values)
        return row

    async def fetchval(self, statement: Statement, /, **values: Any) -> Any:
        return await self._run("fetchval", statement, values)

    async def execute(self, statement: Statement, /, **values: Any) -> str:
        status: str = await self._run("execute", statement, values)
        return status


async def _call(connection: asyncpg.Connection, method: str, statement: Statement, values: dict[str, Any]) -> Any:
    try:
        return await getattr(connection, method)(statement.sql, *statement.arguments(values))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise translate(exc) from exc


class Transaction(_Statements):
    """Statements on one connection, committed together when the block ends (rolled back if it raised)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def _run(self, method: str, statement: Statement, values: dict[str, Any]) -> Any:
        return await _call(self._connection, method, statement, values)


class Database(_Statements):
    """One asyncpg pool; statements run here commit by themselves."""

    def __init__(self, pool: asyncpg.Pool, url: str, *, embedded: bool, connect_patience: float) -> None:
        self._pool = pool
        self.url = url
        self.embedded = embedded
        self._connect_patience = connect_patience

    async def _run(self, method: str, statement: Statement, values: dict[str, Any]) -> Any:
        async with self._connection() as connection:
            return await _call(connection, method, statement, values)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as connection:
            try:
                async with connection.transaction():
                    yield Transaction(connection)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                raise translate(exc) from exc  # BEGIN or COMMIT itself failed

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        connection = await self._acquire()
        try:
            yield connection
        finally:
            await self._pool.release(connection)

    async def _acquire(self) -> asyncpg.Connection:
        """A pooled connection. A server that is full (`max_connections`, or a role's or database's
        limit: more replicas than it was sized for) refuses to open more: the statement then waits,
        up to `connect_patience`, for one of this process's own connections to come back."""
        try:
            try:
                connection: asyncpg.Connection = await self._pool.acquire()
                return connection
            except asyncpg.TooManyConnectionsError:
                return await self._acquire_when_full()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise translate(exc) from exc

    async def _acquire_when_full(self) -> asyncpg.Connection:
        full = AsyncRetrying(
            retry=retry_if_exception_type(asyncpg.TooManyConnectionsError),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            stop=stop_after_delay(self._connect_patience),
            reraise=True,
        )
        async for attempt in full:
            with attempt:
                connection: asyncpg.Connection = await self._pool.acquire()
                return connection
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def schema_revision(self) -> str | None:
        """The alembic revision the database is at (None: never migrated)."""
        exists = await self.fetchval(_HAS_VERSION_TABLE)
        return str(await self.fetchval(_VERSION)) if exists else None

    async def close(self, patience: float = CLOSE_PATIENCE) -> None:
        """Close once every connection is back; those still held after `patience` are cut (the
        process is stopping, and its work had its grace period before this)."""
        try:
            await asyncio.wait_for(self._pool.close(), patience)
        except TimeoutError:
            self._pool.terminate()


_HAS_VERSION_TABLE = Statement("SELECT to_regclass('alembic_version') IS NOT NULL")
_VERSION = Statement("SELECT version_num FROM alembic_version")


async def connect(
    url: str,
    *,
    pool_size: int = 20,
    embedded: bool = False,
    connect_patience: float = 10.0,
    idle_lifetime: float = IDLE_LIFETIME,
    on_connection: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> Database:
    """A pool of at most `pool_size` connections, opened only as load needs them. `on_connection`
    runs on each new connection (the benchmarks count statements with it)."""

    async def prepare(connection: asyncpg.Connection) -> None:
        await _prepare_connection(connection)
        if on_connection is not None:
            await on_connection(connection)

    try:
        pool = await asyncpg.create_pool(
            min_size=0,
            max_size=pool_size,
            max_inactive_connection_lifetime=idle_lifetime,
            init=prepare,
            reset=_keep_as_is,
            **connect_arguments(url),
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise translate(exc) from exc
    return Database(pool, url, embedded=embedded, connect_patience=connect_patience)


async def _prepare_connection(connection: asyncpg.Connection) -> None:
    """JSON in and out as Python values, and one plan per prepared statement: left to choose,
    PostgreSQL planned the reply path's context read afresh on every reply (its estimate for one
    chat beat the kept plan's), which cost more server time than running it."""
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    # A SET rather than a startup parameter: connection poolers refuse parameters they do not know.
    await connection.execute("SET plan_cache_mode = force_generic_plan")


async def _keep_as_is(_: asyncpg.Connection) -> None:
    """Nothing to reset when a connection is given back: aifriend changes no session state after
    `_prepare_connection` (asyncpg's default reset would undo that, and costs a round trip)."""


def asyncpg_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def resolve_database_url(database_url: SecretStr | None, data_dir: Path) -> str:
    """The configured URL, or the embedded server's (started if need be)."""
    if database_url is not None:
        return asyncpg_url(database_url.get_secret_value())
    return embedded_database_url(data_dir)


def describe_url(url: str) -> str:
    """A URL safe for logs and messages: no password."""
    return make_url(url).render_as_string(hide_password=True)


def with_database(url: str, name: str) -> str:
    """The same server, another database."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def url_password(url: str) -> str | None:
    """The password a URL carries (to mask it wherever it would appear); None if it cannot be read."""
    try:
        password = make_url(url).password
    except Exception:  # an unparsable URL fails later with its own message
        return None
    return str(password) if password else None
