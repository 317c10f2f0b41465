"""The Bot API methods the bot uses, as the emulator answers them (`_m_<method>`), and the webhook's
deliveries: one at a time per chat, in order, retried until the bot answers 200, as Telegram does."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import Any

import aiohttp
from aiohttp import web

from app.emulators.telegram_state import BOT_USER, MAX_DOWNLOAD, MAX_TEXT, EmulatorState


class BotApiMethods(EmulatorState):
    async def _m_getme(self, _: dict[str, Any]) -> web.Response:
        return self._ok(BOT_USER)

    async def _m_getfile(self, params: dict[str, Any]) -> web.Response:
        file_id = str(params.get("file_id", ""))
        if file_id not in self.files:
            return self._fail(400, "Bad Request: invalid file_id")
        size = self.file_sizes.get(file_id, len(self.files[file_id]))
        if size > MAX_DOWNLOAD:
            return self._fail(400, "Bad Request: file is too big")
        path = f"voice/file_{file_id[-6:]}.oga"
        return self._ok(
            {"file_id": file_id, "file_unique_id": f"AgAD{file_id[-6:]}", "file_size": size, "file_path": path}
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """``/file/bot<token>/<file_path>``: the bytes of a file `getFile` prepared."""
        if request.match_info["token"] != self.token:
            return self._fail(401, "Unauthorized")
        path = request.match_info["path"]
        file_id = next((f for f in self.files if path == f"voice/file_{f[-6:]}.oga"), None)
        if file_id is None:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(path)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

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
