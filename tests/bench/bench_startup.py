"""How long a new replica takes to answer: from `aifriend run` to the first reply, and where it goes.

Run on demand:  python -m tests.bench.bench_startup
A message waits in the Bot API emulator before the process starts; the clock runs from the
spawn to the reply. Then `python -X importtime` shows which imports the start-up pays for.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from migrations import schema as migrate
from tests.e2e.bot import running_bot
from tests.postgres import fresh_database, server_url

RUNS = 3


def import_costs(module: str, top: int = 12) -> tuple[float, list[tuple[float, str]]]:
    """Import time of `module`, in seconds, and where it goes: each module's own time, added up
    by top-level package (aiogram, sqlalchemy, ...)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
    )
    costs: dict[str, float] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            costs[package] = costs.get(package, 0.0) + int(match.group(1)) / 1e6
    return sum(costs.values()), sorted(((v, k) for k, v in costs.items()), reverse=True)[:top]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            telegram, tgi = TelegramEmulator(), TGIEmulator()
            await telegram.start()
            await tgi.start()
            took = []
            for run in range(RUNS):
                chat = 100 + run
                telegram.user_sends(chat, "are you there?")
                started = time.monotonic()
                async with running_bot(telegram, tgi, url, Path(tmp), "--no-scheduler"):
                    await telegram.wait_for(chat, 1, 120)
                    took.append(time.monotonic() - started)
            await telegram.stop()
            await tgi.stop()
    print(
        f"`aifriend run` to the first reply: median {statistics.median(took):.2f} s "
        f"({', '.join(f'{t:.2f}' for t in took)})"
    )
    for module in ("app.cli", "app.serve, app.wiring"):  # the CLI alone; what `aifriend run` imports
        total, heaviest = import_costs(module)
        print(
            f"import {module}: {total:.2f} s; heaviest: "
            + ", ".join(f"{name} {seconds:.2f}" for seconds, name in heaviest)
        )


if __name__ == "__main__":
    asyncio.run(main())
