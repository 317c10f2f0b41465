"""`aifriend demo` on its own: no token, no GPU, no server, just the package."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def test_the_demo_runs_and_tells_what_happened(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BOT_TOKEN", "TGI_URL")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "demo",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode()
    assert process.returncode == 0, err.decode()[-3000:]
    assert (tmp_path / "var" / "pg" / "PG_VERSION").exists(), "the embedded PostgreSQL lives under DATA_DIR"
    for line in (
        "icebreaker -> warming    trigger count     at message 10",
        "warming -> close      trigger count     at message 30",
        "close -> repair     trigger negative",
        "repair -> close      trigger recovered",
    ):
        assert line in text
    assert "[emulated model]" in text and "emulated" in " ".join(text.splitlines()[:2])
    assert "memory summary: [emulated model]" in text and "Biscuit" in text.split("memory summary:")[1]
    assert "1 unanswered" in text, "the check-in after the break is in the account"
    voice = text.split("4. A voice note")[1].split("5. A short break")[0]
    assert "Robin > [emulated model] hello robin" in voice and "puppy" in voice, "heard, and answered"
    assert "Traceback" not in err.decode()
