"""User text made safe to store: PostgreSQL refuses NUL bytes and lone surrogates."""

from __future__ import annotations

import unicodedata

MAX_STORED_CHARS = 20_000


def clean_text(text: str) -> str:
    """Drop what cannot be stored or shown, keep everything else as the user wrote it."""
    text = text.replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become U+FFFD
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch in "\n\t")
    return text.strip()[:MAX_STORED_CHARS]
