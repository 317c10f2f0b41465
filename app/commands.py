"""The subcommands: each a name, a help line, its options and an async body."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from app.settings import Settings
from storage import migrate
from storage.database import describe_url, resolve_database_url

log = structlog.get_logger()


@dataclass(frozen=True)
class CommandSpec:
    name: str
    help: str
    run: Callable[[argparse.Namespace, Settings], Awaitable[int]]
    configure: Callable[[argparse.ArgumentParser], None] = lambda parser: None


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("alembic").setLevel(logging.INFO)
    url = await asyncio.to_thread(resolve_database_url, settings.database_url, settings.data_dir)
    await asyncio.to_thread(migrate.upgrade, url, args.revision)
    log.info("database_migrated", database=describe_url(url), revision=args.revision)
    return 0


def _migrate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")


ALL: tuple[CommandSpec, ...] = (
    CommandSpec(
        "migrate",
        "alembic upgrade head on the configured database (embedded when DATABASE_URL is unset)",
        cmd_migrate,
        _migrate_options,
    ),
)
