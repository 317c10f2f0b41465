"""A real PostgreSQL for the suite: DATABASE_URL when given, else an embedded server.

Each test gets its own database cloned from a template migrated once to head, so tests
are isolated without rolling back what the code under test commits.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from storage.database import asyncpg_url
from storage.database import with_database as _on_database
from storage.embedded import embedded_database_url

_counter = itertools.count()


def server_url(tmp_root: Path) -> str:
    """An asyncpg URL to a database on the server the suite uses."""
    given = os.environ.get("DATABASE_URL")
    if given:
        return asyncpg_url(given)
    return embedded_database_url(tmp_root / "embedded", database="postgres")


def with_database(url: str, name: str) -> str:
    return _on_database(url, name)


def plain_dsn(url: str) -> str:
    """asyncpg's own connect() wants ``postgresql://``."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def admin_execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@asynccontextmanager
async def fresh_database(url: str, *, template: str | None = None) -> AsyncIterator[str]:
    """A new empty (or template-cloned) database on the server, dropped afterwards."""
    name = unique_name("aif_test")
    clause = f" TEMPLATE {template}" if template else ""
    await admin_execute(url, f"CREATE DATABASE {name}{clause}")
    try:
        yield with_database(url, name)
    finally:
        await admin_execute(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Read what a user or operator would see, over a connection of the test's own."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()
