"""Time zones with rules a test chooses: a TZif file (RFC 8536) with no transitions and a POSIX TZ
footer, put on PYTHONTZPATH of the processes under test, so a real process meets a daylight-saving
change at a minute the test picks, with the machine's clock left alone."""

from __future__ import annotations

import calendar
import struct
from datetime import datetime, timedelta
from pathlib import Path


def _tzif(footer: str) -> bytes:
    # Version 2: a v1 block and a v2 block (both: no transitions, one local time type, "STD"),
    # then the footer, which governs every instant after the (absent) last transition.
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)  # isutcnt isstdcnt leapcnt timecnt typecnt charcnt
    block = b"TZif2" + b"\0" * 15 + counts + struct.pack(">lBB", 0, 0, 0) + b"STD\0"
    return block + block + b"\n" + footer.encode() + b"\n"


def midday_offset(now: datetime) -> int:
    """A whole-hour UTC offset (-12..11) that puts `now` between 10:00 and 12:00 local standard
    time, so a test running at any hour of the day stays far from a local midnight."""
    return (11 - now.hour + 12) % 24 - 12


def zone_springing_forward(root: Path, name: str, at: datetime, standard: int = 0) -> Path:
    """Write zone `name` under `root`: UTC+`standard` hours until `at` (a UTC instant), an hour more
    after it, back at the year's end. Returns `root`, for PYTHONTZPATH."""
    local = at + timedelta(hours=standard)  # POSIX rules count in local standard time
    day = local.timetuple().tm_yday
    if calendar.isleap(local.year) and local.month > 2:
        day -= 1  # the POSIX "Jn" day never counts February 29
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    # POSIX offsets are west-positive: "STD-5" is UTC+5.
    path.write_bytes(_tzif(f"STD{-standard}DST{-(standard + 1)},J{day}/{local:%H:%M:%S},J365/23"))
    return root
