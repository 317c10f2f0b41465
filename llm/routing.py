"""The per-chat routing key: every model request made for a chat (its replies and its summaries)
carries the same opaque key, so a cache-aware router or a sticky load balancer keeps the chat on
the replica that holds its prompt prefix.

The services say which chat a request is for (`for_chat`); the model client turns that into the
key with its own secret (`routing_key`): a keyed hash, never the chat id, a name or any text.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Iterator
from contextvars import ContextVar

SESSION_HEADER = "X-Session-ID"
GATEWAY_HEADER = "X-SMG-Routing-Key"  # the SGLang Model Gateway's routing-key header

_chat: ContextVar[int | None] = ContextVar("aifriend_model_chat", default=None)


@contextlib.contextmanager
def for_chat(chat_id: int) -> Iterator[None]:
    """Model requests made inside the block are for this chat."""
    token = _chat.set(chat_id)
    try:
        yield
    finally:
        _chat.reset(token)


def routing_key(chat_id: int, secret: bytes) -> str:
    """32 hex characters from HMAC-SHA256(secret, chat id): stable across processes sharing the secret."""
    return hmac.new(secret, str(chat_id).encode(), hashlib.sha256).hexdigest()[:32]


def routing_headers(secret: bytes) -> dict[str, str]:
    """The headers for the chat the current request is for; none outside a chat."""
    chat_id = _chat.get()
    if chat_id is None:
        return {}
    key = routing_key(chat_id, secret)
    return {SESSION_HEADER: key, GATEWAY_HEADER: key}


def secret_from(*parts: str | None) -> bytes:
    """The routing secret from what every replica of one deployment shares (the bot token)."""
    return hashlib.sha256("\x00".join(["aifriend-routing", *(p or "" for p in parts)]).encode()).digest()
