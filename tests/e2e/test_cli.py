"""The operator commands as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from app.emulators.tgi import TGIEmulator
from app.services.friend import Friend
from app.services.gate import AccessRules
from storage.database import Database
from storage.dead_letters import DeadLetterRepo
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend
from tests.waiting import until


async def _run(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_inspect_and_stats_read_the_database(service: Friend, database_url: str, tmp_path: Path) -> None:
    outbox = RecordingOutbox(service.database)
    for text in ("hello", "I had an awful, horrible day"):
        await service.handle_text(77, UserInfo(user_id=77, username="kim"), text, outbox)
    env = {"DATABASE_URL": database_url}
    code, out, err = await _run("inspect", "77", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "chat 77 (user 77, @kim)" in out and "state: repair (left icebreaker)" in out
    assert "icebreaker -> repair  [negative] at message 2" in out
    code, out, err = await _run("stats", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "conversations: 1" in out and "repair: 1" in out
    code, out, _ = await _run("inspect", "404", env=env, cwd=tmp_path)
    assert code == 1 and "no conversation" in out


async def test_stats_shows_updates_set_aside_and_sends_given_up(
    service: Friend, database_url: str, tmp_path: Path
) -> None:
    outbox = RecordingOutbox(service.database, blocked={78})
    await service.handle_text(78, UserInfo(user_id=78, username="lee"), "hello", outbox)
    await DeadLetterRepo(service.database).add(
        update_id=9001, chat_id=79, error="DataError: invalid byte sequence", raw="{}", attempts=3
    )
    code, out, err = await _run("stats", env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert code == 0, err
    assert "updates set aside (dead_letter_log) in the same days: 1" in out
    assert "update 9001 chat 79 after 3 tries: DataError: invalid byte sequence" in out
    assert "sends given up (failed_send_log) in the same days: 1" in out
    assert "chat 78 sendMessage after 1 tries: 403: Forbidden: bot was blocked by the user" in out
    assert "messages waiting to be sent to Telegram: 0" in out


async def test_run_without_a_token_names_the_setting(database_url: str, tmp_path: Path) -> None:
    env = {k: "" for k in ("BOT_TOKEN",)} | {"DATABASE_URL": database_url}
    code, _, err = await _run("run", env=env, cwd=tmp_path)
    assert code == 2 and "BOT_TOKEN" in err and "Traceback" not in err
    code, _, err = await _run("scheduler", env={"BOT_TOKEN": "not-a-token", "DATABASE_URL": database_url}, cwd=tmp_path)
    assert code == 2 and "BOT_TOKEN" in err


async def test_an_old_schema_is_refused_with_the_fix(empty_database_url: str, tmp_path: Path) -> None:
    code, _, err = await _run("stats", env={"DATABASE_URL": empty_database_url}, cwd=tmp_path)
    assert code == 2 and "aifriend migrate" in err and len(err.strip().splitlines()) == 1


async def test_fsm_diagram_is_mermaid(tmp_path: Path) -> None:
    code, out, _ = await _run("fsm-diagram", env={}, cwd=tmp_path)
    assert code == 0 and "stateDiagram-v2" in out and "close --> warming: cooldown" in out


async def test_access_from_the_shell_lets_a_waiting_user_in_and_keeps_the_log(
    db: Database, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    """A user held in allowlist mode; the operator allows them with the CLI; the bot answers."""
    friend = build_friend(db, tgi, access=AccessRules(mode="allowlist"))
    outbox = RecordingOutbox(db)
    env = {"DATABASE_URL": database_url}
    try:
        assert await friend.handle_text(79, UserInfo(79), "hi, anyone?", outbox) == []
        code, out, err = await _run("access", "invite", "--uses", "2", "--bot", "robin_bot", env=env, cwd=tmp_path)
        assert code == 0, err
        assert out.startswith("https://t.me/robin_bot?start=") and len(out.strip().split("=")[1]) >= 20
        code, out, err = await _run("access", "allow", "79", env=env, cwd=tmp_path)
        assert code == 0 and "user 79: allowed" in out, err
        await friend.healer.heal(outbox)
        await until(lambda: len(outbox.sent) == 2, what="the waiting message answered")
        code, out, err = await _run("access", "limit", "79", "--tokens-per-day", "500", env=env, cwd=tmp_path)
        assert code == 0, err
        code, out, err = await _run("access", "log", env=env, cwd=tmp_path)
        lines = out.strip().splitlines()
        assert [line.split("\t")[1] for line in lines] == ["invited", "allowed", "limit_set"], out
        assert "tokens_per_day=500" in lines[-1]
        code, _, err = await _run("access", "invite", "--valid", "soon", env=env, cwd=tmp_path)
        assert code == 2 and "--valid" in err
    finally:
        await friend.background.stop(0)
        await friend.model.close()
    assert "not on my list" in outbox.sent[0][1] and outbox.sent[1][1].startswith("[emulated model] hi, anyone?")
