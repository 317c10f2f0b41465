"""The bot on Telegram's side: its client, its dispatcher, and saying who it is at start."""

from __future__ import annotations

import asyncio

import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.types import BotCommand, User

from app.retry import retrying
from app.services.friend import Friend
from app.services.outbox import Outbox
from app.services.voice import VoiceNotes
from app.settings import Settings
from app.telegram.errors import TokenRefusedError, worth_retrying
from app.telegram.handlers import build_router
from app.telegram.middlewares import LogContextMiddleware, UnitMiddleware
from app.telegram.responses import hold_response_models

log = structlog.get_logger(__name__)

COMMANDS = [
    BotCommand(command="start", description="say hello"),
    BotCommand(command="clear", description="start our relationship over"),
    BotCommand(command="memory", description="what I remember; /memory forget WORDS"),
    BotCommand(command="forget", description="delete everything stored about you"),
    BotCommand(command="export", description="get everything stored about you"),
    BotCommand(command="checkins", description="on|off: may I write first after a break"),
    BotCommand(command="timezone", description="Area/City: your time zone"),
    BotCommand(command="usage", description="how much we can talk right now"),
    BotCommand(command="reminders", description="plans and reminders coming up"),
    BotCommand(command="help", description="what I understand"),
]


def make_bot(settings: Settings) -> Bot:
    token = settings.telegram_token()
    hold_response_models()
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")))
    return Bot(token, session=session)


def make_dispatcher(
    friend: Friend, outbox: Outbox, admin_ids: frozenset[int], voice: VoiceNotes | None = None
) -> Dispatcher:
    """Handlers get the services by parameter name (aiogram's dependency injection). `voice`: None
    where no speech recogniser runs (voice notes get the text-only answer)."""
    # aiogram's own FSM is off: the relationship FSM lives in PostgreSQL, and aiogram's memory
    # storage would keep an entry for every chat ever seen (it reads each chat's state per update).
    dispatcher = Dispatcher(
        friend=friend,
        commands=friend.commands,
        reports=friend.reports,
        access=friend.access,
        outbox=outbox,
        admin_ids=admin_ids,
        voice=voice,
        disable_fsm=True,
    )
    dispatcher.update.outer_middleware(LogContextMiddleware())
    dispatcher.update.outer_middleware(UnitMiddleware(friend.commands, outbox))
    dispatcher.include_router(build_router())
    return dispatcher


async def introduce(bot: Bot, stop: asyncio.Event, *, patience: float) -> User | None:
    """Who we are and what we understand, tried until Telegram answers (up to `patience`); None if
    stopped first. A refused token stops at once with one line naming BOT_TOKEN."""
    try:
        async for attempt in retrying("telegram_unreachable", retry_on=worth_retrying, patience=patience, stop=stop):
            with attempt:
                me = await bot.get_me(request_timeout=15)
                await bot.set_my_commands(COMMANDS, request_timeout=15)
    except TelegramUnauthorizedError:
        raise TokenRefusedError() from None
    except Exception:
        if stop.is_set():
            return None
        raise
    structlog.contextvars.bind_contextvars(bot=me.username)
    return me


async def stop_webhook_delivery(bot: Bot, stop: asyncio.Event, *, patience: float) -> None:
    """Before long polling: Telegram answers getUpdates only while no webhook is set."""
    try:
        async for attempt in retrying("delete_webhook_failed", retry_on=worth_retrying, patience=patience, stop=stop):
            with attempt:
                await bot.delete_webhook(request_timeout=15)
    except TelegramUnauthorizedError:
        raise TokenRefusedError() from None
    except Exception:
        if not stop.is_set():
            raise
