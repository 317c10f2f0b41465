"""The webhook: Telegram's POSTs answered once each update is stored, and the registration done once
per configuration across replicas."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from urllib.parse import urlparse

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramUnauthorizedError
from aiohttp import web

from app.retry import retrying
from app.telegram.errors import TokenRefusedError, worth_retrying
from app.telegram.updates import UpdateIntake
from storage.database import Database
from storage.errors import DatabaseError
from storage.webhooks import WebhookRepo

log = structlog.get_logger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_app(intake: UpdateIntake, path: str, secret: str | None) -> web.Application:
    """Telegram's POSTs: 401 without the secret; 200 once the update is stored, ignored or set aside
    (a body that is not even JSON included); 503 only while the database is away, so Telegram retries."""

    async def on_update(request: web.Request) -> web.Response:
        if secret is not None and not hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), secret):
            return web.Response(status=401)
        body = await request.read()
        try:
            raw = json.loads(body)
        except ValueError as exc:
            done = await intake.set_aside_unreadable(body, f"not JSON: {exc}")
        else:
            done = await intake.handle(intake.read(raw))
        return web.Response(status=200 if done else 503)

    app = web.Application()
    app.router.add_post(path, on_update)
    return app


async def listen(intake: UpdateIntake, url: str, listen_on: str, secret: str | None) -> web.AppRunner:
    """Serve the webhook's path on `listen_on` (host:port); the caller cleans the runner up."""
    runner = web.AppRunner(webhook_app(intake, urlparse(url).path or "/", secret), access_log=None)
    await runner.setup()
    host, _, port = listen_on.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    return runner


def webhook_fingerprint(bot_id: int, url: str, secret: str | None, allowed: list[str]) -> str:
    """What identifies a configuration; a hash, so the secret is never stored."""
    material = json.dumps([bot_id, url, secret or "", sorted(allowed)])
    return hashlib.sha256(material.encode()).hexdigest()


async def register(
    bot: Bot,
    database: Database,
    *,
    url: str,
    secret: str | None,
    allowed: list[str],
    worker: str,
    stop: asyncio.Event,
    patience: float,
) -> None:
    """setWebhook only when the configuration changed or Telegram lost it; replicas take turns on a
    lock. The webhook is never deleted on the way out: in a rolling update the other replicas, or
    the next one, keep receiving, and Telegram holds updates (and retries) while none answers."""
    fingerprint = webhook_fingerprint(bot.id, url, secret, allowed)
    try:
        async for attempt in retrying(
            "webhook_registration_failed",
            retry_on=lambda e: worth_retrying(e) or isinstance(e, DatabaseError),
            patience=patience,
            stop=stop,
        ):
            with attempt:
                async with database.transaction() as tx:
                    repo = WebhookRepo(tx)
                    await repo.lock()
                    known = await repo.fingerprint(bot.id) == fingerprint
                    info = await bot.get_webhook_info(request_timeout=15)
                    if known and info.url == url:
                        log.info("webhook_already_registered", url_path=urlparse(url).path)
                        return
                    await bot.set_webhook(url, secret_token=secret, allowed_updates=allowed, request_timeout=15)
                    await repo.record(bot.id, url=url, fingerprint=fingerprint, worker=worker)
                log.info("webhook_registered", url_path=urlparse(url).path, changed=not known)
    except TelegramUnauthorizedError:
        raise TokenRefusedError() from None
