"""Alembic driven from code: bring a database to a revision, and name the revision this code needs."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from storage.errors import SchemaOutdatedError

MIGRATIONS_DIR = Path(__file__).resolve().parent


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


def check_at_head(current: str | None) -> None:
    """Refuse to run on a schema this code was not written for."""
    head = head_revision()
    if current != head:
        raise SchemaOutdatedError(current, head)
