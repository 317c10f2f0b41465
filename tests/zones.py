"""Time zones with rules a test chooses: a TZif file (RFC 8536) with no transitions and a POSIX TZ
footer, put on PYTHONTZPATH of the processes under test, so a real process meets a daylight-saving
change at a minute the test picks, with the machine's clock left alone."""

from __future__ import annotations

import calendar
import struct
from datetime import datetime
from pathlib import Path


def _tzif(footer: str) -> bytes:
    # Version 2: a v1 block and a v2 block (both: no transitions, one local time type, "STD"),
    # then the footer, which governs every instant after the (absent) last transition.
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)  # isutcnt isstdcnt leapcnt timecnt typecnt charcnt
    block = b"TZif2" + b"\0" * 15 + counts + struct.pack(">lBB", 0, 0, 0) + b"STD\0"
    return block + block + b"\n" + footer.encode() + b"\n"


def zone_springing_forward(root: Path, name: str, at: datetime) -> Path:
    """Write zone `name` under `root`: UTC+0 until `at` (a UTC instant, today), UTC+1 after it, back
    at the year's end. Returns `root`, for PYTHONTZPATH."""
    day = at.timetuple().tm_yday
    if calendar.isleap(at.year) and at.month > 2:
        day -= 1  # the POSIX "Jn" day never counts February 29
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tzif(f"STD0DST-1,J{day}/{at:%H:%M:%S},J365/23"))
    return root
