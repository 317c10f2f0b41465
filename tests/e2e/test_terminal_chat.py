"""`aifriend chat` as a user runs it: a real process, real PostgreSQL, a model over HTTP or in-process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from app.emulators.tgi import TGIEmulator
from tests.tiny_models import build_chat_lm


async def _chat(lines: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "chat",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LOG_FORMAT": "json", **env},
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate("\n".join(lines).encode() + b"\n"), 180)
    return process.returncode or 0, out.decode(), err.decode()


async def test_terminal_chat_through_tgi_shows_stage_changes(
    tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    lines = [f"I walked in the park, round {n}" for n in range(1, 11)] + ["/clear", "hello again"]
    code, out, err = await _chat(lines, {"DATABASE_URL": database_url, "TGI_URL": tgi.url}, tmp_path)
    assert code == 0, err
    replies = [line for line in out.splitlines() if line.startswith("friend> ")]
    assert len(replies) == 11 and all("[emulated model]" in line for line in replies)
    assert "[stage: icebreaker" in out
    assert "[stage: warming (count at message 10)]" in out
    assert "[stage: icebreaker, history cleared]" in out


async def test_terminal_chat_with_an_in_process_model(database_url: str, tmp_path: Path) -> None:
    model = build_chat_lm(tmp_path / "lm")
    code, out, err = await _chat(
        ["hello how are you", "tell me about your day"],
        {"DATABASE_URL": database_url, "LLM_BACKEND": "transformers", "LLM_MODEL": str(model)},
        tmp_path,
    )
    assert code == 0, err
    assert len([line for line in out.splitlines() if line.startswith("friend> ")]) == 2
    assert "local_model_loaded" in err


async def test_transformers_backend_without_a_model_is_a_setting_error(database_url: str, tmp_path: Path) -> None:
    code, _, err = await _chat([], {"DATABASE_URL": database_url, "LLM_BACKEND": "transformers"}, tmp_path)
    assert code == 2 and "LLM_MODEL" in err and "Traceback" not in err
