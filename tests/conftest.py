"""Shared fixtures: a real PostgreSQL, a migrated database per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url

from migrations import schema
from storage.database import Database, connect
from tests.postgres import fresh_database, server_url

if TYPE_CHECKING:
    from app.emulators.telegram import TelegramEmulator
    from app.emulators.tgi import TGIEmulator
    from app.services.friend import Friend


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL on the suite's server, for administrative statements."""
    return server_url(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
async def migrated_template(pg_url: str) -> AsyncIterator[str | None]:
    """A database at head that per-test databases are cloned from."""
    async with fresh_database(pg_url) as url:
        await asyncio.to_thread(schema.upgrade, url)
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
    database = await connect(database_url, pool_size=5)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
async def tgi() -> AsyncIterator[TGIEmulator]:
    from app.emulators.tgi import TGIEmulator
    from tests.helpers import serving

    async with serving(TGIEmulator()) as emulator:
        yield emulator


@pytest.fixture
async def service(db: Database, tgi: TGIEmulator) -> AsyncIterator[Friend]:
    """The companion's services as `aifriend run` builds them, on this test's database and the TGI emulator."""
    from tests.helpers import build_friend

    friend = build_friend(db, tgi)
    try:
        yield friend
    finally:
        await friend.background.stop(0)
        await friend.model.close()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramEmulator]:
    from app.emulators.telegram import TelegramEmulator
    from tests.helpers import serving

    async with serving(TelegramEmulator()) as emulator:
        yield emulator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that talks to the suite's server, so CI can rerun just those on another."""
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)
