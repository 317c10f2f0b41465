"""Engine and session factory, made once per process and disposed on the way out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import migrate
from storage.embedded import embedded_database_url
from storage.errors import DatabaseConfigError, DatabaseUnreachableError, is_refused


def asyncpg_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and speak asyncpg."""
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


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    url: str
    embedded: bool

    async def close(self) -> None:
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def raw(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection as asyncpg itself, outside any transaction: for the reply path's
        single statements, which commit by themselves. A connection that broke is not reused."""
        async with self.engine.connect() as connection:
            for _ in range(2):
                driver = (await connection.get_raw_connection()).driver_connection
                if driver is not None and not driver.is_closed():
                    break
                await connection.invalidate()  # closed while idle in the pool: take a fresh one
            try:
                yield driver
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                await connection.invalidate()
                raise


def connect(url: str, *, pool_size: int = 20, embedded: bool = False) -> Database:
    # No pre-ping: it would cost a round trip per unit of work; a dropped connection is
    # invalidated by the pool on its first error instead. Parameters stay out of error
    # messages: they carry what users wrote. No overflow: connections open as load needs them
    # and stay; overflow ones were closed on return and reopened at once under load (a TLS
    # attempt, a startup and an authentication each time).
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_recycle=1800, pool_timeout=10, hide_parameters=True
    )
    return Database(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        url=url,
        embedded=embedded,
    )


async def open_database(
    database_url: SecretStr | None, data_dir: Path, *, pool_size: int = 20
) -> Database:
    """Connect; an embedded database is migrated to head, an external one must already be."""
    embedded = database_url is None
    url = await asyncio.to_thread(resolve_database_url, database_url, data_dir)
    if embedded:
        await asyncio.to_thread(migrate.upgrade, url)
    database = connect(url, pool_size=pool_size, embedded=embedded)
    try:
        await migrate.ensure_at_head(database.engine)
    except (OSError, DBAPIError) as exc:
        await database.close()
        if is_refused(exc):
            raise DatabaseConfigError(
                f"the database at {describe_url(url)} refused the connection ({exc.__class__.__name__}); "
                "check the user, password and database name in DATABASE_URL"
            ) from None
        raise DatabaseUnreachableError(
            f"cannot reach the database at {describe_url(url)} ({exc.__class__.__name__}: {exc}); "
            "check DATABASE_URL and that the server is running"
        ) from None
    except BaseException:
        await database.close()
        raise
    return database
