"""Keeps aiogram's parsed-response classes alive for the process's lifetime.

aiogram parses every Bot API answer with `Response[method.__returning__]`, a pydantic generic
built on first use and cached only weakly. Built inside a function, nothing else holds it, so
each garbage collection frees it and the next call builds it again, a large share of a send's
CPU (`bench_bot --profile`). Holding the classes of the answers the bot reads makes each one
built once.
"""

from __future__ import annotations

from typing import Any

from aiogram.methods.base import Response
from aiogram.types import Message

# sendMessage, sendDocument | sendChatAction, sendMessageDraft, answerCallbackQuery |
# editMessageText | our raw getUpdates
ANSWERS_WE_READ: tuple[Any, ...] = (Message, bool, Message | bool, list[Any])
_held: list[type[Any]] = []


def hold_response_models() -> None:
    """Build the response classes of the answers the bot reads, and keep them."""
    if not _held:
        _held.extend(Response[answer] for answer in ANSWERS_WE_READ)  # type: ignore[valid-type]
