"""Engine and session factory, made once per process and disposed on the way out."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import migrate
from storage.direct import DirectPool
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
    direct: DirectPool

    async def close(self) -> None:
        await self.direct.close()
        await self.engine.dispose()

    def raw(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A pooled connection as asyncpg itself, outside any transaction: for the reply path's
        single statements, which commit by themselves (`storage.direct`)."""
        return self.direct.connection()


def connect(url: str, *, pool_size: int = 20, embedded: bool = False) -> Database:
    """`pool_size` connections at most, in two pools that open them only as load needs them:
    asyncpg's for the reply path and the senders (three quarters; the senders hold at most 8),
    SQLAlchemy's for everything else (commands, check-ins, healing, reports: short units of work)."""
    # No pre-ping: it would cost a round trip per unit of work; a dropped connection is
    # invalidated by the pool on its first error instead. Parameters stay out of error
    # messages: they carry what users wrote. No overflow: connections open as load needs them
    # and stay; overflow ones were closed on return and reopened at once under load (a TLS
    # attempt, a startup and an authentication each time).
    others = max(1, pool_size // 4)
    engine = create_async_engine(
        url,
        pool_size=others,
        max_overflow=0,
        pool_recycle=1800,
        pool_timeout=10,
        hide_parameters=True,
    )
    return Database(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        url=url,
        embedded=embedded,
        direct=DirectPool(_asyncpg_arguments(engine), max(1, pool_size - others)),
    )


def _asyncpg_arguments(engine: AsyncEngine) -> dict[str, Any]:
    """What SQLAlchemy passes to `asyncpg.connect` for this URL (host, socket, TLS options and all),
    so both pools connect alike; without the keys its own adapter consumes."""
    _, arguments = engine.dialect.create_connect_args(engine.url)
    for adapter_only in ("async_creator_fn", "prepared_statement_cache_size", "prepared_statement_name_func"):
        arguments.pop(adapter_only, None)
    return dict(arguments)


async def open_database(database_url: SecretStr | None, data_dir: Path, *, pool_size: int = 20) -> Database:
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
