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

import json
import random
import time
from typing import Any

from aiohttp import web, web_request

from app.emulators.telegram_methods import BotApiMethods
from app.emulators.telegram_state import SEND_FAULTS
from app.emulators.telegram_users import SimulatedUsers

__all__ = ["SEND_FAULTS", "TelegramEmulator"]

PROXY_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


class TelegramEmulator(SimulatedUsers, BotApiMethods):
    """The state (`EmulatorState`), its users and methods, served over HTTP on loopback."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._pusher:
            self._pusher.cancel()
        if self._runner:
            await self._runner.cleanup()

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
        if method.lower() == "getupdates":  # a long poll is always waiting: it is not a call in flight
            return await self._answer(method, request)
        self.in_flight += 1
        try:
            return await self._answer(method, request)
        finally:
            self.in_flight -= 1

    async def _answer(self, method: str, request: web.Request) -> web.Response:
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


def _decode(value: str) -> Any:
    """aiogram sends nested objects (reply_markup, commands) as JSON strings in form fields."""
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
