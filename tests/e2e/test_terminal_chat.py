"""`aifriend chat` as a user runs it: a real process, real PostgreSQL, a model over HTTP or in-process."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

from app.emulators.tgi import TGIEmulator
from tests.tiny_models import build_chat_lm


async def _chat(lines: list[str], env: dict[str, str], cwd: Path, *options: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "chat",
        *options,
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


async def test_with_no_model_server_the_chat_says_what_is_missing_and_the_ways_on(
    database_url: str, tmp_path: Path
) -> None:
    code, out, err = await _chat(["hello"], {"DATABASE_URL": database_url, "TGI_URL": "http://127.0.0.1:9"}, tmp_path)
    assert code == 2 and "Traceback" not in err
    line = [text for text in err.splitlines() if text.startswith("aifriend: ")]
    assert len(line) == 1 and "no model server answers at http://127.0.0.1:9" in line[0], err
    for way_on in ("TGI_URL", "LLM_BACKEND=transformers", "aifriend chat --emulated-model"):
        assert way_on in line[0]
    assert "friend>" not in out


async def test_the_chat_with_the_emulated_model_says_it_is_emulated(database_url: str, tmp_path: Path) -> None:
    code, out, err = await _chat(["hello there"], {"DATABASE_URL": database_url}, tmp_path, "--emulated-model")
    assert code == 0, err
    assert "[emulated model at http://127.0.0.1:" in out and "it echoes what you write" in out
    assert "friend> [emulated model] hello there" in out


def test_in_a_terminal_the_chat_keeps_its_log_out_of_the_conversation(database_url: str, tmp_path: Path) -> None:
    """stdout and stderr on one terminal, as a person runs it: the log goes to a file, named once."""
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "chat", "--emulated-model"],
        stdin=subprocess.PIPE,
        stdout=terminal,
        stderr=terminal,
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    os.close(terminal)
    assert process.stdin is not None
    process.stdin.write(b"hello there\n/quit\n")
    process.stdin.close()
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end closed: the process exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert process.wait(120) == 0
    text = shown.decode(errors="replace")
    assert "friend> [emulated model] hello there" in text, text
    assert text.count("the log is in var/logs/chat.log") == 1, text
    assert "reply_written" not in text and "conversation_started" not in text, text
    assert "reply_written" in (tmp_path / "var" / "logs" / "chat.log").read_text()
