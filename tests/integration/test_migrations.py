"""The migrations build exactly the models, both ways, and the operator views are there."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from migrations import schema as migrate
from storage.database import connect
from storage.models import Base
from tests.postgres import plain_dsn

CONTRACT_VIEWS = {
    "conversation_overview": [
        "chat_id",
        "user_id",
        "username",
        "state",
        "stage_before_repair",
        "user_messages",
        "bot_messages",
        "last_user_message_at",
        "last_bot_message_at",
        "checkins_enabled",
        "checkins_unanswered",
        "last_checkin_at",
        "timezone",
        "memory_summary",
        "updated_at",
    ],
    "state_transition_log": [
        "id",
        "chat_id",
        "from_state",
        "to_state",
        "trigger",
        "user_messages",
        "sentiment_negative",
        "sentiment_positive",
        "created_at",
    ],
    "message_log": ["id", "chat_id", "role", "kind", "text", "telegram_message_id", "created_at"],
    "access_log": ["id", "user_id", "action", "by_user_id", "detail", "created_at"],
    "followup_schedule": ["id", "chat_id", "kind", "what", "event_at", "due_at", "status", "created_at"],
}


async def _relations(url: str) -> dict[str, tuple[str, str | None]]:
    """Every table and view in public: kind ('r' or 'v') and its comment."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await connection.fetch(
            """
            SELECT c.relname, c.relkind::text AS relkind, obj_description(c.oid, 'pg_class') AS comment
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')
            """
        )
    finally:
        await connection.close()
    return {row["relname"]: (row["relkind"], row["comment"]) for row in rows}


async def test_every_revision_upgrades_downgrades_and_upgrades_again(empty_database_url: str) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert revisions, "no migrations found"
    for revision in revisions:
        await asyncio.to_thread(migrate.upgrade, empty_database_url, revision.revision)
        await asyncio.to_thread(migrate.downgrade, empty_database_url, revision.down_revision or "base")
        await asyncio.to_thread(migrate.upgrade, empty_database_url, revision.revision)


async def test_head_base_head_round_trip_leaves_nothing_behind(empty_database_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, empty_database_url, "head")
    assert set(CONTRACT_VIEWS) <= set(await _relations(empty_database_url))
    await asyncio.to_thread(migrate.downgrade, empty_database_url, "base")
    assert set(await _relations(empty_database_url)) == {"alembic_version"}
    await asyncio.to_thread(migrate.upgrade, empty_database_url, "head")
    assert set(CONTRACT_VIEWS) <= set(await _relations(empty_database_url))


async def test_models_and_migrations_agree(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            drift = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert drift == []


async def test_every_table_and_view_has_a_comment(database_url: str) -> None:
    relations = await _relations(database_url)
    missing = [name for name, (_, comment) in relations.items() if not comment and name != "alembic_version"]
    assert missing == []
    assert {relations[name][0] for name in CONTRACT_VIEWS} == {"v"}


async def test_views_have_the_contract_columns_in_order(database_url: str) -> None:
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        for view, columns in CONTRACT_VIEWS.items():
            rows = await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
                view,
            )
            assert [row["column_name"] for row in rows] == columns, view
    finally:
        await connection.close()


async def test_views_show_what_the_tables_hold(database_url: str) -> None:
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        await connection.execute(
            """
            INSERT INTO users (id, username, timezone) VALUES (7, 'ann', 'Europe/Berlin');
            INSERT INTO conversations (chat_id, user_id, memory_summary) VALUES (7, 7, 'likes tea');
            INSERT INTO messages (chat_id, role, kind, text) VALUES (7, 'user', 'text', 'hi');
            INSERT INTO state_transitions (chat_id, from_state, to_state, trigger, user_messages)
                 VALUES (7, NULL, 'icebreaker', 'start', 0);
            """
        )
        overview = await connection.fetchrow("SELECT * FROM conversation_overview")
        assert (overview["username"], overview["state"], overview["timezone"], overview["memory_summary"]) == (
            "ann",
            "icebreaker",
            "Europe/Berlin",
            "likes tea",
        )
        assert await connection.fetchval("SELECT trigger FROM state_transition_log") == "start"
        assert await connection.fetchval("SELECT text FROM message_log") == "hi"
    finally:
        await connection.close()


async def test_a_check_constraint_refuses_an_unknown_state(database_url: str) -> None:
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        await connection.execute("INSERT INTO users (id) VALUES (1)")
        try:
            await connection.execute("INSERT INTO conversations (chat_id, user_id, state) VALUES (1, 1, 'married')")
        except asyncpg.CheckViolationError:
            pass
        else:
            raise AssertionError("an unknown state was accepted")
    finally:
        await connection.close()


async def test_migrations_started_at_once_by_several_pods_do_not_race(empty_database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What each bot pod's init container does on a rolling update: `aifriend migrate` side by side."""
    import os
    import sys

    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "migrate",
            env={**os.environ, "DATABASE_URL": empty_database_url},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = await asyncio.gather(*(asyncio.wait_for(p.communicate(), 120) for p in processes))
    assert [p.returncode for p in processes] == [0, 0, 0], [err.decode()[-500:] for _, err in outputs]
    database = await connect(empty_database_url, pool_size=1)
    try:
        assert await database.schema_revision() == migrate.head_revision()
    finally:
        await database.close()
