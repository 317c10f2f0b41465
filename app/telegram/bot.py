"""`aifriend run`: the bot on long polling or a webhook, with a healer for what a crash left owed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from app.metrics import serve_metrics
from app.services.checkins import CheckinService
from app.services.conversation import ConversationService
from app.services.operators import OperatorReports
from app.settings import Settings
from app.telegram.handlers import build_router
from app.telegram.middlewares import LogContextMiddleware, OnceMiddleware
from app.telegram.outbox import TelegramOutbox
from app.telegram.polling import poll
from scheduler.runner import claim_lease, sweeping, worker_name

log = structlog.get_logger()

COMMANDS = [
    BotCommand(command="start", description="say hello"),
    BotCommand(command="clear", description="start our relationship over"),
    BotCommand(command="forget", description="delete everything stored about you"),
    BotCommand(command="export", description="get everything stored about you"),
    BotCommand(command="checkins", description="on|off: may I write first after a break"),
    BotCommand(command="timezone", description="Area/City: your time zone"),
    BotCommand(command="help", description="what I understand"),
]
HEAL_EVERY = 5.0
PRUNE_EVERY_ROUNDS = 720  # about once an hour


def make_bot(settings: Settings) -> Bot:
    token = settings.telegram_token()
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")))
    return Bot(token, session=session)


def make_dispatcher(conversation: ConversationService, outbox: TelegramOutbox, settings: Settings) -> Dispatcher:
    dispatcher = Dispatcher(
        conversation=conversation, outbox=outbox, admin_ids=settings.admin_ids,
        reports=OperatorReports(conversation.database),
    )
    dispatcher.update.outer_middleware(LogContextMiddleware())
    dispatcher.update.outer_middleware(OnceMiddleware(conversation))
    dispatcher.include_router(build_router())
    return dispatcher


async def _heal_forever(conversation: ConversationService, outbox: TelegramOutbox) -> None:
    """Answer messages a crashed worker left unanswered (at start, then every few seconds)."""
    rounds = 0
    while True:
        try:
            healed = await conversation.heal(outbox)
            if healed:
                log.info("chats_healed", chats=healed)
            if rounds % PRUNE_EVERY_ROUNDS == 0:
                pruned = await conversation.prune_updates()
                if pruned:
                    log.info("processed_updates_pruned", rows=pruned)
        except Exception:
            log.exception("heal_failed")
        rounds += 1
        await asyncio.sleep(HEAL_EVERY)


@contextlib.asynccontextmanager
async def exposing_metrics(conversation: ConversationService, settings: Settings) -> AsyncIterator[None]:
    """Prometheus `/metrics` on METRICS_LISTEN, when it is set."""
    if settings.metrics_listen is None:
        yield
        return
    runner = await serve_metrics(conversation.metrics, settings.metrics_listen)
    try:
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def background(conversation: ConversationService, outbox: TelegramOutbox) -> AsyncIterator[None]:
    healer = asyncio.create_task(_heal_forever(conversation, outbox))
    try:
        yield
    finally:
        healer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await healer
        await conversation.drain()


async def serve(
    settings: Settings,
    conversation: ConversationService,
    *,
    stop: asyncio.Event | None = None,
    with_scheduler: bool = True,
) -> None:
    """Run until stopped (a signal, or `stop` when embedded in the demo)."""
    bot = make_bot(settings)
    outbox = TelegramOutbox(bot)
    dispatcher = make_dispatcher(conversation, outbox, settings)
    try:
        me = await bot.get_me()
        structlog.contextvars.bind_contextvars(bot=me.username)
        await bot.set_my_commands(COMMANDS)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(exposing_metrics(conversation, settings))
            await stack.enter_async_context(background(conversation, outbox))
            if with_scheduler:
                checkins = CheckinService(
                    conversation, worker=worker_name("bot"), lease=claim_lease(settings.checkin_sweep_every)
                )
                await stack.enter_async_context(sweeping(checkins, outbox, settings.checkin_sweep_every))
            if settings.webhook_url:
                await _serve_webhook(settings, bot, dispatcher, stop)
            else:
                await _serve_polling(bot, dispatcher, stop)
    finally:
        await bot.session.close()


async def serve_scheduler(settings: Settings, conversation: ConversationService) -> None:
    """`aifriend scheduler`: check-in sweeps only, sending through the same Bot API."""
    bot = make_bot(settings)
    try:
        checkins = CheckinService(
            conversation, worker=worker_name("scheduler"), lease=claim_lease(settings.checkin_sweep_every)
        )
        async with (
            exposing_metrics(conversation, settings),
            sweeping(checkins, TelegramOutbox(bot), settings.checkin_sweep_every),
        ):
            await _stop_on_signals().wait()
    finally:
        await bot.session.close()
        await conversation.drain()


async def _serve_polling(bot: Bot, dispatcher: Dispatcher, stop: asyncio.Event | None) -> None:
    await bot.delete_webhook()
    log.info("polling_started")
    await poll(bot, dispatcher, stop or _stop_on_signals())


def _stop_on_signals() -> asyncio.Event:
    """SIGINT and SIGTERM end the loop cleanly: replies in flight are finished first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve_webhook(settings: Settings, bot: Bot, dispatcher: Dispatcher, stop: asyncio.Event | None) -> None:
    assert settings.webhook_url is not None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlparse(settings.webhook_url).path or "/"
    app = web.Application()
    # Not in the background: Telegram gets 200 only once the message is stored, and retries otherwise.
    SimpleRequestHandler(dispatcher=dispatcher, bot=bot, secret_token=secret, handle_in_background=False).register(
        app, path=path
    )
    setup_application(app, dispatcher, bot=bot)
    host, _, port = settings.webhook_listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    await bot.set_webhook(
        settings.webhook_url, secret_token=secret, allowed_updates=dispatcher.resolve_used_update_types()
    )
    log.info("webhook_listening", listen=settings.webhook_listen, path=path)
    try:
        await (stop or _stop_on_signals()).wait()
    finally:
        await runner.cleanup()
