"""With no DATABASE_URL the service brings its own PostgreSQL, shared and persistent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from app.settings import load_settings
from app.wiring import open_database
from storage.embedded import embedded_database_url
from storage.errors import SchemaOutdatedError
from tests.postgres import plain_dsn

HOLD = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import timedelta
    from pathlib import Path
    from app.settings import load_settings
    from app.wiring import open_database
    from storage.sql import Statement

    async def main():
        settings = load_settings(database_url=None, data_dir=Path(sys.argv[1]))
        database = await open_database(settings, patience=timedelta(seconds=30))
        insert = Statement("INSERT INTO users (id) VALUES (CAST(:id AS bigint)) ON CONFLICT DO NOTHING")
        await database.execute(insert, id=int(sys.argv[2]))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await database.close()

    asyncio.run(main())
    """
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def _postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "pg" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def _hold(data_dir: Path, user_id: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(user_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else ""
    return process


def _release(process: subprocess.Popen[str]) -> None:
    _, errors = process.communicate(input="", timeout=60)
    assert process.returncode == 0, errors


async def _names(url: str, query: str) -> set[str]:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        return {row[0] for row in await connection.fetch(query)}
    finally:
        await connection.close()


async def test_migrate_builds_the_schema_in_an_embedded_server(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "migrate"],
        env=_env() | {"DATA_DIR": str(tmp_path / "var")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "pg" / "PG_VERSION").exists()
    url = await asyncio.to_thread(embedded_database_url, tmp_path / "var")
    commented_views = await _names(
        url,
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'v' AND obj_description(c.oid, 'pg_class') IS NOT NULL",
    )
    assert {"conversation_overview", "state_transition_log", "message_log"} <= commented_views


def test_two_processes_share_one_server_and_data_survives_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = _hold(data_dir, 1)
    server = _postmaster_pid(data_dir)
    second = _hold(data_dir, 2)
    assert _postmaster_pid(data_dir) == server is not None
    _release(first)
    assert _postmaster_pid(data_dir) == server, "the server stopped under a process still using it"
    _release(second)
    assert _postmaster_pid(data_dir) is None, "the last process left the server running"

    again = _hold(data_dir, 3)
    assert _postmaster_pid(data_dir) not in (None, server)
    url = embedded_database_url(data_dir)
    assert asyncio.run(_names(url, "SELECT id::text FROM users")) == {"1", "2", "3"}
    _release(again)


async def test_an_external_database_on_an_old_schema_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    settings = load_settings(database_url=SecretStr(empty_database_url), data_dir=tmp_path)
    with pytest.raises(SchemaOutdatedError, match="aifriend migrate"):
        await open_database(settings, patience=timedelta(seconds=5))
