"""Where a process's CPU goes, by package: py-spy samples grouped by who spent them.

Used by `bench_bot --profile`; needs `pip install py-spy` (not part of the dev extra: only
benchmarks use it). Each sample is charged to the innermost frame that is not the standard
library (so `json.dumps` called by structlog counts as structlog), or to the standard library
when the whole stack is (the event loop between callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sysconfig
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STDLIB = sysconfig.get_paths()["stdlib"]
FRAME = re.compile(r"\((?P<file>[^()]*?):\d+\)$")


@contextlib.asynccontextmanager
async def sampling(pid: int, out: Path) -> AsyncIterator[None]:
    """py-spy records `pid` (without pausing it) while the block runs; raw stacks go to `out`."""
    if shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    process = await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--full-filenames",
        "--nonblocking",
        "--rate",
        "250",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        await process.wait()


def package_of(file: str) -> str | None:
    """'aiogram', 'app', 'sqlalchemy'...; None for the standard library."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    path = Path(file)
    if path.is_relative_to(REPO):
        return "aifriend " + path.relative_to(REPO).parts[0].removesuffix(".py")
    if file.startswith(STDLIB) or file.startswith("<"):
        return None
    return path.name


def by_package(raw: Path) -> Counter[str]:
    """Samples per package, from py-spy's raw output (`frame;frame;... count` per line, leaf last)."""
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        owner = "python stdlib (event loop, ...)"
        for frame in reversed(stack.split(";")):
            match = FRAME.search(frame)
            package = package_of(match["file"]) if match else None
            if package is not None:
                owner = package
                break
        totals[owner] += int(count)
    return totals


def report(raw: Path, top: int = 14) -> str:
    totals = by_package(raw)
    samples = sum(totals.values()) or 1
    lines = [f"CPU by package ({samples} samples while busy):"]
    for package, count in totals.most_common(top):
        lines.append(f"  {100 * count / samples:5.1f} %  {package}")
    return "\n".join(lines)
