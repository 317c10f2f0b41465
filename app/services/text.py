"""Text made safe to store and to send: PostgreSQL refuses NUL bytes and lone surrogates."""

from __future__ import annotations

import re
from typing import Any

from app.services.split import split_message
from storage.outbox import Outgoing

MAX_STORED_CHARS = 20_000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Unicode's control characters (category Cc: U+0000-U+001F and U+007F-U+009F) but tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def storable(text: str) -> str:
    """Without what PostgreSQL cannot store (NUL, lone surrogates), trimmed; everything else kept."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _LONE_SURROGATE.sub("\ufffd", text).strip()


def clean_text(text: str) -> str:
    """A user's text: storable, without control characters but newlines and tabs, and bounded."""
    return _CONTROL.sub("", storable(text)).strip()[:MAX_STORED_CHARS]


def text_sends(text: str, reply_markup: dict[str, Any] | None = None) -> list[Outgoing]:
    """`sendMessage` calls for a text of any length, split where a reader would pause."""
    pieces = split_message(text)
    sends = [Outgoing("sendMessage", {"text": piece}) for piece in pieces]
    if reply_markup is not None and sends:
        sends[-1] = Outgoing("sendMessage", {"text": pieces[-1], "reply_markup": reply_markup})
    return sends
