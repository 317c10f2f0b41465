"""Everything that is not text: a kind answer in private chats, a clean ignore elsewhere."""

from __future__ import annotations

import structlog
from aiogram import Router
from aiogram.types import Message

from app.services.commands import CommandService, UpdateUnit
from app.telegram import texts
from app.telegram.filters import private_chat

router = Router(name=__name__)
log = structlog.get_logger(__name__)


@router.message(private_chat)
async def on_not_text(message: Message, unit: UpdateUnit, commands: CommandService) -> None:
    log.info("non_text_answered", content_type=message.content_type)
    await commands.note_other(unit, f"[{message.content_type}]", texts.NOT_TEXT)


@router.message()
async def on_group_message(message: Message) -> None:
    log.info("group_message_ignored", chat_type=message.chat.type)


@router.edited_message()
async def on_edited(message: Message) -> None:
    log.info("edited_message_ignored")


@router.channel_post()
async def on_channel_post(message: Message) -> None:
    log.info("channel_post_ignored")
