"""Long replies split where a reader would pause: paragraphs, then sentences, then words."""

from __future__ import annotations

import re

TELEGRAM_LIMIT = 4096
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at the latest natural boundary."""
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = window.rfind("\n\n")
        if cut <= 0:
            ends = [m.start() for m in _SENTENCE_END.finditer(window)]
            cut = ends[-1] if ends and ends[-1] > 0 else window.rfind("\n")
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces
