"""/reminders: the plans and reminders coming up, each with a button to cancel it."""

from __future__ import annotations

import contextlib
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from app.services.commands import CommandService, UpdateUnit
from app.services.friend import Friend
from app.telegram import texts
from app.telegram.filters import looks_like_command
from storage.followups import Followup

router = Router(name=__name__)
router.message.filter(looks_like_command)

CANCEL = "followup:cancel:"


def coming_text(coming: list[Followup], zone: ZoneInfo) -> str:
    lines = [texts.REMINDERS_HEADING]
    for n, item in enumerate(coming, 1):
        when = f"{item.event_at.astimezone(zone):%a %d %b %H:%M}"
        if item.kind == "reminder":
            lines.append(texts.REMINDER_LINE.format(n=n, when=when, what=item.what))
        else:
            lines.append(texts.PLAN_LINE.format(n=n, when=when, what=item.what))
    return "\n".join(lines)


@router.message(Command("reminders"))
async def cmd_reminders(message: Message, friend: Friend, unit: UpdateUnit, commands: CommandService) -> None:
    coming = await friend.followups.coming(unit.tx, unit.chat_id)
    if not coming:
        await commands.answer(unit, texts.REMINDERS_EMPTY, command=message.text)
        return
    zone = ZoneInfo(await commands.timezone(unit) or friend.rules.default_tz)
    buttons = [
        [{"text": texts.CANCEL_BUTTON.format(n=n), "callback_data": f"{CANCEL}{item.id}"}]
        for n, item in enumerate(coming, 1)
    ]
    await commands.answer(
        unit, coming_text(coming, zone), command=message.text, reply_markup={"inline_keyboard": buttons}
    )


async def _cancel_pressed(query: CallbackQuery) -> bool:
    return query.data is not None and query.data.startswith(CANCEL)


@router.callback_query(_cancel_pressed)
async def on_cancel(query: CallbackQuery, friend: Friend, unit: UpdateUnit, commands: CommandService) -> None:
    asked = (query.data or "").removeprefix(CANCEL)
    what = await friend.followups.cancel(unit.tx, unit.chat_id, int(asked)) if asked.isdigit() else None
    text = texts.CANCELLED.format(what=what) if what is not None else texts.NOTHING_TO_CANCEL
    await commands.answer(unit, text)
    with contextlib.suppress(TelegramAPIError):
        await query.answer()
