"""The Bot API emulator's state, and what its parts share: the answers' shape and the record of
what the bot sent."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_TEXT = 4096
MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile: "bots can download files of up to 20MB in size"
SEND_FAULTS = ("429", "502", "502html", "reset_before", "reset_after")
BOT_USER = {"id": 42, "is_bot": True, "first_name": "Robin", "username": "aifriend_bot"}


@dataclass
class EmulatorState:
    token: str = "42:EMULATED-token"
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    actions: list[tuple[int, str]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    flood_next: int = 0
    flood_retry_after: int = 1
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_deliveries: int = 0
    webhook_connections: int = 40  # Telegram's default max_connections
    webhook_statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # 0: no answer
    webhook_sets: int = 0
    drafts: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))  # shown previews
    offer_drafts: bool = True  # False: an older Bot API server, sendMessageDraft is "method not found"
    draft_faults: list[int] = field(default_factory=list)  # popped per draft call: seconds of a 429
    webhook_deletes: int = 0
    url: str = ""
    first_update_id: int = 1  # a second emulator for the same bot continues where the first stopped
    pushed_at: dict[int, float] = field(default_factory=dict)
    send_faults: list[str] = field(default_factory=list)  # popped one per sending call, see SEND_FAULTS
    update_faults: list[str] = field(default_factory=list)  # popped one per getUpdates: "502html", "reset"
    chaos_until: float = 0.0  # until this monotonic time, random sending calls fail...
    chaos_rate: float = 0.0  # ...with this probability...
    chaos_kinds: tuple[str, ...] = SEND_FAULTS  # ...in one of these ways
    faults_injected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ambiguous: list[tuple[int, str]] = field(default_factory=list)  # accepted, but the answer was lost
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _message_ids: dict[int, itertools.count[int]] = field(default_factory=dict)
    _confirmed: int = 0
    _polled: int = 0  # confirmed through getUpdates: gone for good, never pushed to a webhook later
    _scan_from: int = 0  # `updates` before this index are all confirmed: getUpdates looks from here on
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _pusher: asyncio.Task[None] | None = None
    in_flight: int = 0  # Bot API calls it is still answering
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> what users sent (voice notes)
    file_sizes: dict[str, int] = field(default_factory=dict)  # a size to claim instead of the real one
    downloads: list[str] = field(default_factory=list)  # file paths the bot downloaded

    def __post_init__(self) -> None:
        self._ids = itertools.count(self.first_update_id)

    @property
    def unconfirmed(self) -> int:
        """Updates handed out (or waiting) that the bot has not confirmed yet."""
        return sum(1 for update in self.updates[self._scan_from :] if update["update_id"] > self._confirmed)

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.sent[chat_id]]

    async def wait_for(self, chat_id: int, count: int, patience: float = 60.0) -> list[dict[str, Any]]:
        """Until the bot has sent `count` messages to the chat; woken by the sending call itself
        (no polling: a benchmark waits on a thousand chats at once)."""
        if len(self.sent[chat_id]) < count:
            arrived = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(chat_id, []).append((count, arrived))
            try:
                await asyncio.wait_for(arrived, patience)
            except TimeoutError:
                raise TimeoutError(
                    f"chat {chat_id} got {len(self.sent[chat_id])} of {count} messages: {self.texts(chat_id)}"
                ) from None
            finally:
                waiting = self._waiters.get(chat_id, [])
                if (count, arrived) in waiting:
                    waiting.remove((count, arrived))
        return self.sent[chat_id]

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _fail(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    def _chat_check(self, params: dict[str, Any]) -> tuple[int, web.Response | None]:
        chat_id = int(params.get("chat_id", 0))
        if chat_id in self.blocked:
            return chat_id, self._fail(403, "Forbidden: bot was blocked by the user")
        if self.flood_next > 0:
            self.flood_next -= 1
            return chat_id, self._fail(
                429, f"Too Many Requests: retry after {self.flood_retry_after}", retry_after=self.flood_retry_after
            )
        return chat_id, None

    def _record(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            **content,
            "received_at": time.monotonic(),
        }
        self.sent[chat_id].append(message)
        for wanted, arrived in self._waiters.get(chat_id, ()):
            if len(self.sent[chat_id]) >= wanted and not arrived.done():
                arrived.set_result(None)
        return message
