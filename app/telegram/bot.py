"""`aifriend run`: the bot on long polling or a webhook, the outbox's senders, and a healer.

Start-up waits for Telegram (retrying with backoff) rather than failing. On SIGTERM the
process stops taking updates, gives replies and sends in flight SHUTDOWN_GRACE to finish,
then hands its reply leases and outbox claims back so another process takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.types import BotCommand
from aiohttp import web

from app.heap import settle_heap
from app.metrics import Health, serve_metrics
from app.readiness import Stage, database_check, model_check
from app.services.checkins import CheckinService
from app.services.commands import CommandService
from app.services.conversation import ConversationService
from app.services.delivery import DeliveryQueue
from app.services.operators import OperatorReports
from app.settings import Settings, SettingsError
from app.telegram.handlers import build_router
from app.telegram.intake import UpdateIntake
from app.telegram.middlewares import LogContextMiddleware, UnitMiddleware
from app.telegram.polling import poll
from app.telegram.responses import hold_response_models
from app.telegram.transport import TelegramTransport
from scheduler.runner import claim_lease, sweeping
from storage.webhooks import WebhookRepo

log = structlog.get_logger()

COMMANDS = [
    BotCommand(command="start", description="say hello"),
    BotCommand(command="clear", description="start our relationship over"),
    BotCommand(command="memory", description="what I remember; /memory forget WORDS"),
    BotCommand(command="forget", description="delete everything stored about you"),
    BotCommand(command="export", description="get everything stored about you"),
    BotCommand(command="checkins", description="on|off: may I write first after a break"),
    BotCommand(command="timezone", description="Area/City: your time zone"),
    BotCommand(command="help", description="what I understand"),
]
SWEEP_EVERY = 1.0  # outbox retries and a dead sender's claims are picked up this often
HEAL_EVERY = 2.0
PRUNE_EVERY = 3600.0
WEBHOOK_PATIENCE = 20.0  # a database outage longer than this gets Telegram a 503 (it retries)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def make_bot(settings: Settings) -> Bot:
    token = settings.telegram_token()
    hold_response_models()
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")))
    return Bot(token, session=session)


def make_dispatcher(
    conversation: ConversationService, commands: CommandService, outbox: DeliveryQueue, settings: Settings
) -> Dispatcher:
    # aiogram's own FSM is off: the relationship FSM lives in PostgreSQL, and aiogram's memory
    # storage would keep an entry for every chat ever seen (it reads each chat's state per update).
    dispatcher = Dispatcher(
        conversation=conversation,
        commands=commands,
        outbox=outbox,
        admin_ids=settings.admin_ids,
        reports=OperatorReports(conversation.database),
        disable_fsm=True,
    )
    dispatcher.update.outer_middleware(LogContextMiddleware())
    dispatcher.update.outer_middleware(UnitMiddleware(commands, outbox))
    dispatcher.include_router(build_router())
    return dispatcher


async def _maintain(conversation: ConversationService, outbox: DeliveryQueue) -> None:
    """Retries and orphaned sends every second; chats a crashed worker left owed every two; pruning and
    recall's common words hourly."""
    last_heal = last_prune = 0.0
    failing = False
    while True:
        try:
            await outbox.sweep()
            if time.monotonic() - last_heal >= HEAL_EVERY:
                last_heal = time.monotonic()
                await conversation.heal(outbox)
            if time.monotonic() - last_prune >= PRUNE_EVERY:
                last_prune = time.monotonic()
                pruned = await conversation.prune_updates()
                if pruned:
                    log.info("processed_updates_pruned", rows=pruned)
                common = await conversation.memory.refresh_common_words()
                log.info("recall_common_words_refreshed", words=common)
            if failing:
                log.info("maintenance_recovered")
            failing = False
        except Exception as exc:  # the database may be away; try again next round
            if not failing:
                log.warning("maintenance_failed", error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
            failing = True
        await asyncio.sleep(SWEEP_EVERY)


def readiness(conversation: ConversationService, stage: Stage) -> Health:
    """`/readyz`: the database and its schema, and `stage` (taking updates, or sweeping); the model is shown only."""
    health = Health(conversation.metrics)
    health.required["database"] = database_check(conversation.database)
    health.required[stage.name] = stage.check
    health.informative["model"] = model_check(conversation.model, conversation.metrics)
    return health


@contextlib.asynccontextmanager
async def exposing_metrics(
    conversation: ConversationService, settings: Settings, health: Health | None = None
) -> AsyncIterator[None]:
    """Prometheus `/metrics`, `/healthz` and `/readyz` on METRICS_LISTEN, when it is set."""
    if settings.metrics_listen is None:
        yield
        return
    runner = await serve_metrics(conversation.metrics, settings.metrics_listen, health)
    try:
        yield
    finally:
        await runner.cleanup()


async def introduce(bot: Bot, stop: asyncio.Event) -> bool:
    """Who we are and what we understand, retried until Telegram answers; False if stopped first."""
    attempt = 0
    while not stop.is_set():
        try:
            me = await bot.get_me(request_timeout=15)
            await bot.set_my_commands(COMMANDS, request_timeout=15)
        except TelegramUnauthorizedError:
            raise SettingsError(
                "invalid setting BOT_TOKEN: Telegram refused it (401); get a valid one from @BotFather"
            ) from None
        except Exception as exc:
            attempt += 1
            delay = min(30.0, 2.0**attempt)
            log.warning(
                "telegram_unreachable",
                error=f"{exc.__class__.__name__}: {str(exc)[:300]}",
                retry_in=delay,
                attempt=attempt,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        structlog.contextvars.bind_contextvars(bot=me.username)
        return True
    return False


async def serve(
    settings: Settings,
    conversation: ConversationService,
    *,
    stop: asyncio.Event | None = None,
    with_scheduler: bool = True,
) -> None:
    """Run until stopped (a signal, or `stop` when embedded in the demo), then hand over cleanly."""
    stop = stop or stop_on_signals()
    bot = make_bot(settings)
    outbox = DeliveryQueue(
        conversation.database, TelegramTransport(bot), worker=conversation.worker, metrics=conversation.metrics
    )
    commands = CommandService(conversation)
    dispatcher = make_dispatcher(conversation, commands, outbox, settings)
    intake = UpdateIntake(bot, dispatcher, commands, outbox)
    grace = settings.shutdown_grace.total_seconds()
    taking = Stage("telegram", "waiting for Telegram to answer getMe")
    health = readiness(conversation, taking)
    try:
        async with contextlib.AsyncExitStack() as stack:
            # Probes answer from the start: a replica waiting for Telegram is alive but not ready.
            await stack.enter_async_context(exposing_metrics(conversation, settings, health))
            if not await introduce(bot, stop):
                return
            settle_heap()
            maintenance = asyncio.create_task(_maintain(conversation, outbox))
            stack.callback(maintenance.cancel)
            if with_scheduler:
                checkins = CheckinService(conversation, lease=claim_lease(settings.checkin_sweep_every))
                await stack.enter_async_context(sweeping(checkins, outbox, settings.checkin_sweep_every, grace=grace))
            if settings.webhook_url:
                await _serve_webhook(settings, bot, intake, dispatcher, stop, taking)
            else:
                await _serve_polling(bot, intake, dispatcher, stop, taking)
            health.stopping = True
            log.info("stopping", grace_seconds=grace)
            deadline = time.monotonic() + grace
            await conversation.stop(max(0.0, deadline - time.monotonic()))
            await outbox.close(max(0.0, deadline - time.monotonic()))
    finally:
        await bot.session.close()


async def serve_scheduler(settings: Settings, conversation: ConversationService) -> None:
    """`aifriend scheduler`: check-in sweeps only, sending through the same outbox."""
    stop = stop_on_signals()
    bot = make_bot(settings)
    outbox = DeliveryQueue(
        conversation.database, TelegramTransport(bot), worker=conversation.worker, metrics=conversation.metrics
    )
    grace = settings.shutdown_grace.total_seconds()
    sweeps = Stage("scheduler", "starting")
    health = readiness(conversation, sweeps)
    try:
        checkins = CheckinService(conversation, lease=claim_lease(settings.checkin_sweep_every))
        async with (
            exposing_metrics(conversation, settings, health),
            sweeping(checkins, outbox, settings.checkin_sweep_every, grace=grace),
        ):
            settle_heap()
            sweeps.reach(f"sweeping every {settings.checkin_sweep_every.total_seconds():g} s")
            await stop.wait()
            health.stopping = True
            log.info("stopping", grace_seconds=grace)
        await conversation.stop(grace)
        await outbox.close(grace)
    finally:
        await bot.session.close()


async def _serve_polling(
    bot: Bot, intake: UpdateIntake, dispatcher: Dispatcher, stop: asyncio.Event, taking: Stage
) -> None:
    while not stop.is_set():
        try:
            await bot.delete_webhook(request_timeout=15)
            break
        except Exception as exc:
            log.warning("delete_webhook_failed", error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
    log.info("polling_started")
    taking.reach("long polling")
    await poll(bot, intake, dispatcher.resolve_used_update_types(), stop)


def stop_on_signals() -> asyncio.Event:
    """SIGINT and SIGTERM end the loop cleanly: replies in flight are finished first (within the grace)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


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
            done = await intake.set_aside_unreadable(body, f"not JSON: {exc}", patience=WEBHOOK_PATIENCE)
        else:
            done = await intake.handle(intake.read(raw), patience=WEBHOOK_PATIENCE)
        return web.Response(status=200 if done else 503)

    app = web.Application()
    app.router.add_post(path, on_update)
    return app


async def _serve_webhook(
    settings: Settings, bot: Bot, intake: UpdateIntake, dispatcher: Dispatcher, stop: asyncio.Event, taking: Stage
) -> None:
    """Listen, make sure Telegram knows the webhook (once per configuration), serve until stopped.

    The webhook is never deleted on the way out: in a rolling update the other replicas, or the
    next one, keep receiving; Telegram holds updates (and retries) while none answers."""
    assert settings.webhook_url is not None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlparse(settings.webhook_url).path or "/"
    runner = web.AppRunner(webhook_app(intake, path, secret), access_log=None)
    await runner.setup()
    host, _, port = settings.webhook_listen.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    try:
        allowed = dispatcher.resolve_used_update_types()
        if not await _register_webhook(bot, intake.commands.conversation, settings.webhook_url, secret, allowed, stop):
            return
        log.info("webhook_listening", listen=settings.webhook_listen, path=path)
        taking.reach(f"webhook on {settings.webhook_listen}")
        await stop.wait()
    finally:
        await runner.cleanup()


def webhook_fingerprint(bot_id: int, url: str, secret: str | None, allowed: list[str]) -> str:
    """What identifies a configuration; a hash, so the secret is never stored."""
    material = json.dumps([bot_id, url, secret or "", sorted(allowed)])
    return hashlib.sha256(material.encode()).hexdigest()


async def _register_webhook(
    bot: Bot,
    conversation: ConversationService,
    url: str,
    secret: str | None,
    allowed: list[str],
    stop: asyncio.Event,
) -> bool:
    """setWebhook only when the configuration changed or Telegram lost it; replicas take turns on a lock."""
    fingerprint = webhook_fingerprint(bot.id, url, secret, allowed)
    attempt = 0
    while not stop.is_set():
        try:
            async with conversation.database.sessions.begin() as session:
                repo = WebhookRepo(session)
                await repo.lock()
                known = await repo.fingerprint(bot.id) == fingerprint
                info = await bot.get_webhook_info(request_timeout=15)
                if known and info.url == url:
                    log.info("webhook_already_registered", url_path=urlparse(url).path)
                    return True
                await bot.set_webhook(url, secret_token=secret, allowed_updates=allowed, request_timeout=15)
                await repo.record(bot.id, url=url, fingerprint=fingerprint, worker=conversation.worker)
            log.info("webhook_registered", url_path=urlparse(url).path, changed=not known)
            return True
        except Exception as exc:
            attempt += 1
            delay = min(30.0, 2.0**attempt)
            log.warning(
                "webhook_registration_failed",
                error=f"{exc.__class__.__name__}: {str(exc)[:300]}",
                retry_in=delay,
                attempt=attempt,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return False
