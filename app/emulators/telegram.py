"""A Telegram Bot API emulator following `shared/specs/telegram-bot-api.json` for what the bot uses.

Requests arrive at ``/bot<token>/<method>`` as form fields (aiogram's way, nested objects
as JSON strings), multipart (files) or a JSON body; answers are ``{"ok", "result"}`` or
``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``. Updates are
handed out by ``getUpdates`` (offsets, long polling) or pushed to a webhook with the secret
header, and redelivered while the webhook does not answer 200, as Telegram does.
Users are simulated by ``user_sends`` and friends. Faults are scripted or random: blocked
users, flood limits, and on every sending method 429s, 5xx answers (JSON, or a proxy's HTML
page), connections reset before the request is processed, and resets *after* it was processed
(Telegram accepted the message but its answer is lost: ``ambiguous`` lists those, since only
they may honestly arrive twice). ``getUpdates`` can answer with an HTML 502 or a reset, and
``push_raw`` hands out any update at all, malformed ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web, web_request

MAX_TEXT = 4096
SEND_FAULTS = ("429", "502", "502html", "reset_before", "reset_after")
PROXY_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
BOT_USER = {"id": 42, "is_bot": True, "first_name": "Robin", "username": "aifriend_bot"}


@dataclass
class TelegramEmulator:
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

    def __post_init__(self) -> None:
        self._ids = itertools.count(self.first_update_id)

    # ---- simulated users ----
    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def message(
        self,
        chat_id: int,
        *,
        text: str | None = None,
        user_id: int | None = None,
        username: str | None = "user",
        chat_type: str = "private",
        **content: Any,
    ) -> dict[str, Any]:
        user = {
            "id": user_id or chat_id,
            "is_bot": False,
            "first_name": (username or "User").title(),
            "username": username,
            "language_code": "en",
        }
        chat = {"id": chat_id, "type": chat_type}
        chat |= {"first_name": user["first_name"]} if chat_type == "private" else {"title": "A group"}
        message = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            **content,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return message

    def push(self, **update: Any) -> int:
        update_id = next(self._ids)
        self.pushed_at[update_id] = time.monotonic()
        self.updates.append({"update_id": update_id, **update})
        self._arrived.set()
        return update_id

    def push_raw(self, update: dict[str, Any]) -> int:
        """Hand out any update as it is (a poison one, an unknown type): no validation at all."""
        return self.push(**update)

    def chaos(self, seconds: float, rate: float, kinds: tuple[str, ...] = SEND_FAULTS) -> None:
        """For `seconds`, each sending call fails with probability `rate`, in one of `kinds`."""
        self.chaos_until, self.chaos_rate, self.chaos_kinds = time.monotonic() + seconds, rate, kinds

    def user_sends(self, chat_id: int, text: str, **kwargs: Any) -> int:
        return self.push(message=self.message(chat_id, text=text, **kwargs))

    def user_sends_sticker(self, chat_id: int) -> int:
        sticker = {
            "file_id": "CAAC",
            "file_unique_id": "s1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "😀",
        }
        return self.push(message=self.message(chat_id, sticker=sticker))

    def user_presses(self, chat_id: int, message_id: int, data: str) -> int:
        user = {"id": chat_id, "is_bot": False, "first_name": "User"}
        original = next(m for m in self.sent[chat_id] if m["message_id"] == message_id)
        return self.push(
            callback_query={
                "id": str(next(self._ids)),
                "from": user,
                "chat_instance": "1",
                "data": data,
                "message": original,
            }
        )

    def redeliver(self, update_id: int) -> None:
        """Hand an update out again, as Telegram does after a crash or a failed webhook call."""
        update = next(u for u in self.updates if u["update_id"] == update_id)
        self.updates.append(dict(update))
        self._confirmed = min(self._confirmed, update_id - 1)
        self._scan_from = 0  # what was confirmed before may be pending again
        self._arrived.set()

    def texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.sent[chat_id]]

    async def wait_for(self, chat_id: int, count: int, patience: float = 30.0) -> list[dict[str, Any]]:
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

    # ---- server ----
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        if self._pusher:
            self._pusher.cancel()
        if self._runner:
            await self._runner.cleanup()

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _fail(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        params: dict[str, Any] = {}
        if request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web_request.FileField):  # a multipart file part
                    params[key] = {"filename": value.filename, "content": value.file.read()}
                else:
                    params[key] = _decode(str(value))
        params |= {k: _decode(v) for k, v in request.query.items()}
        for key, value in list(params.items()):  # files are sent as "attach://<part name>"
            if isinstance(value, str) and value.startswith("attach://"):
                params[key] = params.pop(value.removeprefix("attach://"), {})
        return params

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._fail(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append((method, params))
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return self._fail(404, "Not Found: method not found")
        if method.lower() == "getupdates" and self.update_faults:
            return self._fault(request, self.update_faults.pop(0))
        if method.lower() in ("sendmessage", "senddocument", "editmessagetext"):
            fault = self._next_send_fault()
            if fault == "reset_after":  # processed, then the connection dies before the answer
                answer = await handler(params)
                if answer.status == 200:
                    self.ambiguous.append(
                        (int(params.get("chat_id", 0)), str(params.get("text") or params.get("caption")))
                    )
                return self._fault(request, fault)
            if fault:
                return self._fault(request, fault)
        return await handler(params)  # type: ignore[no-any-return]

    def _next_send_fault(self) -> str | None:
        if self.send_faults:
            return self.send_faults.pop(0)
        if time.monotonic() < self.chaos_until and random.random() < self.chaos_rate:
            return random.choice(self.chaos_kinds)
        return None

    def _fault(self, request: web.Request, kind: str) -> web.Response:
        self.faults_injected[kind] += 1
        if kind == "429":
            return self._fail(429, "Too Many Requests: retry after 1", retry_after=1)
        if kind == "502":
            return self._fail(502, "Bad Gateway")
        if kind == "502html":
            return web.Response(status=502, text=PROXY_502, content_type="text/html")
        if kind == "400":
            return self._fail(400, "Bad Request: chat not found")
        if kind in ("reset_before", "reset_after", "reset"):
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        raise ValueError(f"unknown fault {kind!r}")

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

    async def _m_getme(self, _: dict[str, Any]) -> web.Response:
        return self._ok(BOT_USER)

    async def _m_getupdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook_url:
            return self._fail(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        if offset:
            self._confirmed = max(self._confirmed, offset - 1)
            self._polled = max(self._polled, offset - 1)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            # Telegram forgets confirmed updates: a long benchmark must not scan all it ever handed out.
            while self._scan_from < len(self.updates) and self.updates[self._scan_from]["update_id"] <= self._confirmed:
                self._scan_from += 1
            pending = [u for u in self.updates[self._scan_from :] if u["update_id"] > self._confirmed]
            if offset:
                pending = [u for u in pending if u["update_id"] >= offset]
            if pending or time.monotonic() >= deadline:
                limit = int(params.get("limit") or 100)
                return self._ok(pending[:limit])
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - time.monotonic()))

    async def _m_sendmessage(self, params: dict[str, Any]) -> web.Response:
        chat_id, failed = self._chat_check(params)
        if failed:
            return failed
        text = str(params.get("text", ""))
        if not text.strip():
            return self._fail(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return self._fail(400, "Bad Request: message is too long")
        extra = {"reply_markup": params["reply_markup"]} if params.get("reply_markup") else {}
        return self._ok(self._record(chat_id, text=text, **extra))

    async def _m_senddocument(self, params: dict[str, Any]) -> web.Response:
        chat_id, failed = self._chat_check(params)
        if failed:
            return failed
        document = params.get("document") or {}
        return self._ok(
            self._record(
                chat_id,
                caption=params.get("caption", ""),
                document={"file_id": "DOC", "file_unique_id": "d1", "file_name": document.get("filename")},
                document_content=document.get("content", b"").decode("utf-8", "replace"),
            )
        )

    async def _m_editmessagetext(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params.get("chat_id", 0))
        for message in self.sent[chat_id]:
            if message["message_id"] == int(params.get("message_id", 0)):
                message["text"] = params.get("text")
                message.pop("reply_markup", None)
                return self._ok(message)
        return self._fail(400, "Bad Request: message to edit not found")

    async def _m_sendmessagedraft(self, params: dict[str, Any]) -> web.Response:
        if not self.offer_drafts:
            return self._fail(404, "Not Found: method not found")
        chat_id, refused = self._chat_check(params)
        if refused is not None:
            return refused
        if self.draft_faults:
            retry_after = self.draft_faults.pop(0)
            return self._fail(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        draft_id = int(params["draft_id"])
        text = str(params.get("text") or "")
        if draft_id == 0 or len(text) > MAX_TEXT:
            return self._fail(400, "Bad Request: invalid draft")
        self.drafts[chat_id].append({"draft_id": draft_id, "text": text, "received_at": time.monotonic()})
        return self._ok(True)

    async def _m_sendchataction(self, params: dict[str, Any]) -> web.Response:
        chat_id, failed = self._chat_check(params)
        if failed:
            return failed
        self.actions.append((chat_id, str(params.get("action"))))
        return self._ok(True)

    async def _m_answercallbackquery(self, _: dict[str, Any]) -> web.Response:
        return self._ok(True)

    async def _m_setmycommands(self, params: dict[str, Any]) -> web.Response:
        self.commands = list(params.get("commands") or [])
        return self._ok(True)

    async def _m_deletewebhook(self, _: dict[str, Any]) -> web.Response:
        self.webhook_deletes += 1
        self.webhook_url = self.webhook_secret = None
        return self._ok(True)

    async def _m_setwebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook_sets += 1
        self.webhook_url = str(params["url"])
        self.webhook_secret = params.get("secret_token")
        if "max_connections" in params:
            self.webhook_connections = int(params["max_connections"])
        if self._pusher is None:
            self._pusher = asyncio.create_task(self._push_webhook())
        return self._ok(True)

    async def _m_getwebhookinfo(self, _: dict[str, Any]) -> web.Response:
        return self._ok(
            {
                "url": self.webhook_url or "",
                "has_custom_certificate": False,
                "pending_update_count": len([u for u in self.updates if u["update_id"] > self._confirmed]),
            }
        )

    async def _push_webhook(self) -> None:
        """Deliver updates to the webhook, up to `webhook_connections` at once but one at a time per
        chat, in order; anything but 200 is retried, like Telegram."""
        in_flight: dict[int, asyncio.Task[None]] = {}  # id() of the update -> its delivery
        async with aiohttp.ClientSession() as session:
            while True:
                busy = {_chat_of(u) for u in self.updates if id(u) in in_flight} - {None}
                ready = []
                for update in self.updates:
                    if id(update) in in_flight or update["update_id"] <= self._polled:
                        continue
                    chat = _chat_of(update)
                    if chat is not None and chat in busy:
                        continue
                    busy.add(chat)
                    ready.append(update)
                room = max(0, self.webhook_connections - len(in_flight))
                for update in ready[:room] if self.webhook_url else []:
                    task = asyncio.create_task(self._deliver(session, update))
                    in_flight[id(update)] = task
                    task.add_done_callback(functools.partial(self._delivered, in_flight, id(update)))
                self._arrived.clear()
                await self._arrived.wait()

    def _delivered(self, in_flight: dict[int, asyncio.Task[None]], key: int, _: asyncio.Task[None]) -> None:
        in_flight.pop(key, None)
        self._arrived.set()

    async def _deliver(self, session: aiohttp.ClientSession, update: dict[str, Any]) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret} if self.webhook_secret else {}
        while self.webhook_url:
            try:
                async with session.post(self.webhook_url, json=update, headers=headers) as response:
                    self.webhook_deliveries += 1
                    self.webhook_statuses[response.status] += 1
                    if response.status == 200:
                        self._confirmed = max(self._confirmed, update["update_id"])
                        self.updates.remove(update)
                        self._scan_from = 0  # the indexes moved
                        return
            except aiohttp.ClientError:
                self.webhook_statuses[0] += 1
            await asyncio.sleep(0.2)


def _chat_of(update: dict[str, Any]) -> int | None:
    message = update.get("message") or (update.get("callback_query") or {}).get("message") or {}
    chat = message.get("chat") if isinstance(message, dict) else None
    return chat.get("id") if isinstance(chat, dict) else None


def _decode(value: str) -> Any:
    """aiogram sends nested objects (reply_markup, commands) as JSON strings in form fields."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
