"""Shared fixtures: a real PostgreSQL, a migrated database per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import migrate
from storage.database import Database, connect
from sqlalchemy.engine import make_url

from tests.postgres import fresh_database, server_url


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL on the suite's server, for administrative statements."""
    return server_url(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
async def migrated_template(pg_url: str) -> AsyncIterator[str | None]:
    """A database at head that per-test databases are cloned from."""
    async with fresh_database(pg_url) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        yield make_url(url).database


@pytest.fixture
async def database_url(pg_url: str, migrated_template: str) -> AsyncIterator[str]:
    """A private database at head for one test."""
    async with fresh_database(pg_url, template=migrated_template) as url:
        yield url


@pytest.fixture
async def empty_database_url(pg_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_url) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = connect(database_url, pool_size=5)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent

