"""Durations as operators write them: ``90s``, ``15m``, ``24h``, ``7d`` (and ``1.5s``)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(value: object) -> timedelta:
    """Read a duration setting; bare numbers are refused so a unit is never guessed."""
    if isinstance(value, timedelta):
        return value
    match = _PATTERN.match(str(value).lower())
    if match is None:
        raise ValueError(f"{value!r} is not a duration; write a number with s, m, h or d, e.g. 90s or 24h")
    amount, unit = match.groups()
    return timedelta(seconds=float(amount) * _UNITS[unit])
