"""Who may talk: operators' commands (/invite, /allow, /block, /pending, /limit and the approval
buttons), a user's /usage, and Telegram's word that the user blocked or unblocked the bot.

Operator commands answer only ADMIN_IDS; anyone else gets silence, as for /inspect.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, ChatMemberUpdated, Message

from app.durations import parse_duration
from app.services.access import AccessDesk
from app.services.commands import CommandService, UpdateUnit
from app.services.holds import APPROVE, REFUSE, local_time
from app.telegram import texts
from app.telegram.filters import looks_like_command
from storage.access import AccessRepo

router = Router(name=__name__)
router.message.filter(looks_like_command)  # plain text passes this router in one check

MAX_USES = 1000
MAX_VALID = timedelta(days=365)


def _sender(event: Message | CallbackQuery) -> int | None:
    return event.from_user.id if event.from_user is not None else None


def _user_id(argument: str | None) -> int | None:
    value = (argument or "").strip()
    return int(value) if value.isdigit() and len(value) <= 20 else None


@router.message(Command("invite"))
async def cmd_invite(
    message: Message, command: CommandObject, bot: Bot, access: AccessDesk, unit: UpdateUnit, commands: CommandService
) -> None:
    if not access.is_admin(_sender(message)):
        return
    words = (command.args or "").split()
    try:
        uses = int(words[0]) if words else 1
        valid = parse_duration(words[1]) if len(words) > 1 else timedelta(days=7)
    except ValueError:
        uses, valid = 0, timedelta(0)
    if len(words) > 2 or not 1 <= uses <= MAX_USES or not timedelta(0) < valid <= MAX_VALID:
        await commands.answer(unit, texts.INVITE_USAGE, command=message.text)
        return
    code = await access.invite(unit.tx, uses=uses, valid=valid, by_user_id=_sender(message))
    me = await bot.me()
    until = (message.date + valid).strftime("%Y-%m-%d %H:%M")
    link = f"https://t.me/{me.username}?start={code}"
    people = "person" if uses == 1 else "people"
    # The code is sent once and never stored: the history keeps the answer without it.
    await commands.answer(
        unit,
        texts.INVITE_LINK.format(uses=uses, people=people, until=until, link=link),
        command=message.text,
        stored_as=texts.INVITE_LINK.format(uses=uses, people=people, until=until, link="(link not kept)"),
    )


@router.message(Command("allow", "block"))
async def cmd_allow_or_block(
    message: Message, command: CommandObject, access: AccessDesk, unit: UpdateUnit, commands: CommandService
) -> None:
    if not access.is_admin(_sender(message)):
        return
    user_id = _user_id(command.args)
    if user_id is None:
        await commands.answer(unit, texts.USER_ID_USAGE.format(command=command.command), command=message.text)
        return
    action = "allowed" if command.command == "allow" else "blocked"
    await access.decide(unit.tx, user_id, action, by_user_id=_sender(message))
    answer = texts.ALLOWED if action == "allowed" else texts.BLOCKED
    await commands.answer(unit, answer.format(user_id=user_id), command=message.text)


@router.message(Command("pending"))
async def cmd_pending(message: Message, access: AccessDesk, unit: UpdateUnit, commands: CommandService) -> None:
    if not access.is_admin(_sender(message)):
        return
    waiting = await AccessRepo(unit.tx).pending()
    if not waiting:
        await commands.answer(unit, texts.NOBODY_PENDING, command=message.text)
        return
    lines = [texts.PENDING_HEADING]
    rows = []
    for user in waiting:
        name = user.first_name or "someone"
        handle = f" @{user.username}" if user.username else ""
        lines.append(f"- {name}{handle}, user {user.user_id}, since {user.since:%Y-%m-%d %H:%M} UTC")
        rows.append(
            [
                {"text": f"Approve {name}", "callback_data": f"{APPROVE}{user.user_id}"},
                {"text": "Refuse", "callback_data": f"{REFUSE}{user.user_id}"},
            ]
        )
    await commands.answer(unit, "\n".join(lines), command=message.text, reply_markup={"inline_keyboard": rows})


@router.message(Command("limit"))
async def cmd_limit(
    message: Message, command: CommandObject, access: AccessDesk, unit: UpdateUnit, commands: CommandService
) -> None:
    if not access.is_admin(_sender(message)):
        return
    words = (command.args or "").split()
    user_id = _user_id(words[0]) if words else None
    limits = [_limit(word) for word in words[1:]]
    if user_id is None or len(limits) != 2 or any(limit == "bad" for limit in limits):
        await commands.answer(unit, texts.LIMIT_USAGE, command=message.text)
        return
    replies, tokens = (limit if isinstance(limit, int) else None for limit in limits)
    await access.set_limits(unit.tx, user_id, replies=replies, tokens=tokens, by_user_id=_sender(message))
    shown = [
        "the default" if value is None else "no limit" if value == 0 else str(value) for value in (replies, tokens)
    ]
    await commands.answer(
        unit, texts.LIMIT_SET.format(user_id=user_id, replies=shown[0], tokens=shown[1]), command=message.text
    )


def _limit(word: str) -> int | str:
    """A limit as written: a number, "-" for the setting's default, or "bad"."""
    if word == "-":
        return "-"
    return int(word) if word.isdigit() and len(word) <= 12 else "bad"


async def _access_answer(query: CallbackQuery) -> bool:
    return query.data is not None and query.data.startswith((APPROVE, REFUSE))


@router.callback_query(_access_answer)
async def on_access_answer(
    query: CallbackQuery, access: AccessDesk, unit: UpdateUnit, commands: CommandService
) -> None:
    if not access.is_admin(_sender(query)):
        return
    data = query.data or ""
    approve = data.startswith(APPROVE)
    user_id = _user_id(data.removeprefix(APPROVE if approve else REFUSE))
    if user_id is None:
        return
    # Either way the user's wait ends: the gate then answers them, or tells them kindly it cannot.
    await access.decide(unit.tx, user_id, "approved" if approve else "refused", by_user_id=_sender(query))
    said = texts.APPROVED if approve else texts.REFUSED
    if query.message is not None:
        original = getattr(query.message, "text", None) or ""
        await commands.edit(unit, query.message.message_id, original + said.format(user_id=user_id))
    with contextlib.suppress(TelegramAPIError):  # only stops the button's spinner
        await query.answer()


@router.message(Command("usage"))
async def cmd_usage(message: Message, access: AccessDesk, unit: UpdateUnit, commands: CommandService) -> None:
    standing = await access.standing(unit.tx, unit.user.user_id, unit.chat_id)
    replies = (
        f"{standing.replies_last_minute} in the last minute, up to {standing.replies_limit} a minute"
        if standing.replies_limit
        else f"{standing.replies_last_minute} in the last minute, no limit"
    )
    tokens = (
        f"{standing.tokens_today:,} used, limit {standing.tokens_limit:,}"
        if standing.tokens_limit
        else f"{standing.tokens_today:,}, no daily limit"
    )
    midnight = local_time(standing.day_ends, standing.zone)
    text = texts.USAGE.format(replies=replies, tokens=tokens, midnight=midnight, zone=standing.zone.key)
    await commands.answer(unit, text, command=message.text)


@router.my_chat_member()
async def on_member_changed(update: ChatMemberUpdated, access: AccessDesk, unit: UpdateUnit) -> None:
    if update.chat.type != "private":
        return
    blocked = update.new_chat_member.status in ("kicked", "left")
    await access.telegram_member(unit.tx, update.chat.id, blocked=blocked)
