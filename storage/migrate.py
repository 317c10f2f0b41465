"""Alembic driven from code: upgrade to head, and the check that refuses an old schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from storage.errors import SchemaOutdatedError

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An alembic config for the packaged migrations; ``url`` wins over the settings."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: alembic runs its own event loop, so call this from a worker thread."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def ensure_at_head(engine: AsyncEngine) -> None:
    """Refuse to run on a schema this code was not written for."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutdatedError(current, head)
