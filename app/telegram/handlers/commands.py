"""The user's commands: /start, /clear, /forget, /export, /checkins, /timezone, /help."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from app.services.conversation import ConversationService
from app.services.operators import OperatorReports
from app.telegram import texts
from app.telegram.handlers.common import user_info
from app.telegram.outbox import TelegramOutbox

router = Router(name=__name__)
router.message.filter(F.chat.type == "private")
log = structlog.get_logger()

FORGET_YES, FORGET_NO = "forget:yes", "forget:no"


@router.message(CommandStart())
async def cmd_start(message: Message, conversation: ConversationService, outbox: TelegramOutbox) -> None:
    await conversation.greet(message.chat.id, user_info(message.from_user, message.chat.id), outbox)


@router.message(Command("clear"))
async def cmd_clear(message: Message, conversation: ConversationService) -> None:
    await conversation.reset(message.chat.id, user_info(message.from_user, message.chat.id))
    await message.answer(texts.CLEARED)


@router.message(Command("help"))
async def cmd_help(message: Message) -> None:
    await message.answer(texts.HELP)


@router.message(Command("forget"))
async def cmd_forget(message: Message) -> None:
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=texts.FORGET_YES, callback_data=FORGET_YES),
        InlineKeyboardButton(text=texts.FORGET_NO, callback_data=FORGET_NO),
    ]])
    await message.answer(texts.FORGET_CONFIRM, reply_markup=keyboard)


@router.callback_query(F.data.in_({FORGET_YES, FORGET_NO}))
async def on_forget_answer(query: CallbackQuery, conversation: ConversationService) -> None:
    await query.answer()
    if query.data == FORGET_YES:
        removed = await conversation.forget(query.from_user.id)
        log.info("user_forgotten", users_removed=removed)
        text = texts.FORGOTTEN
    else:
        text = texts.FORGET_KEPT
    if query.message is not None and query.bot is not None:
        await query.bot.edit_message_text(text, chat_id=query.message.chat.id, message_id=query.message.message_id)


@router.message(Command("export"))
async def cmd_export(message: Message, reports: OperatorReports) -> None:
    user_id = message.from_user.id if message.from_user else message.chat.id
    data = await reports.export(user_id)
    if data is None:
        await message.answer(texts.EXPORT_EMPTY)
        return
    document = BufferedInputFile(
        json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"), filename="aifriend-export.json"
    )
    await message.answer_document(document, caption=texts.EXPORT_CAPTION)


@router.message(Command("checkins"))
async def cmd_checkins(message: Message, command: CommandObject, conversation: ConversationService) -> None:
    choice = (command.args or "").strip().lower()
    if choice not in ("on", "off"):
        row = await conversation.conversation(message.chat.id)
        state = "on" if row is None or row.checkins_enabled else "off"
        await message.answer(texts.CHECKINS_USAGE.format(state=state))
        return
    user = user_info(message.from_user, message.chat.id)
    await conversation.set_checkins(message.chat.id, user, choice == "on")
    await message.answer(texts.CHECKINS_ON if choice == "on" else texts.CHECKINS_OFF)


@router.message(Command("timezone"))
async def cmd_timezone(message: Message, command: CommandObject, conversation: ConversationService) -> None:
    name = (command.args or "").strip()
    if not name:
        await message.answer(texts.TIMEZONE_USAGE)
        return
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        await message.answer(texts.TIMEZONE_UNKNOWN.format(zone=name[:64]))
        return
    user = user_info(message.from_user, message.chat.id)
    await conversation.set_timezone(message.chat.id, user, name)
    local = datetime.now(UTC).astimezone(zone).strftime("%H:%M")
    await message.answer(texts.TIMEZONE_SET.format(zone=name, local=local))


@router.message(F.text.startswith("/"))
async def on_unknown_command(message: Message) -> None:
    await message.answer(texts.UNKNOWN_COMMAND)
