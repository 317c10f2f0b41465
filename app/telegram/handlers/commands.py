"""The user's commands: /start (an invite code too), /clear, /memory, /forget, /export, /checkins,
/timezone, /help.

Each stores what it did and queues its answer in the update's unit of work (see
`UnitMiddleware`), so it is answered once, after its effect is kept.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

import structlog
from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message

from app.services.access import AccessDesk
from app.services.commands import CommandService, UpdateUnit
from app.services.friend import Friend
from app.telegram import texts
from app.telegram.filters import looks_like_command, private_chat, text_command
from app.telegram.handlers.plans import coming_text
from storage.access import Redeemed
from storage.memory import Remembered

router = Router(name=__name__)
router.message.filter(private_chat, looks_like_command)  # plain text passes this router in one check
log = structlog.get_logger(__name__)

FORGET_YES, FORGET_NO = "forget:yes", "forget:no"
FORGET_KEYBOARD = {
    "inline_keyboard": [
        [
            {"text": texts.FORGET_YES, "callback_data": FORGET_YES},
            {"text": texts.FORGET_NO, "callback_data": FORGET_NO},
        ]
    ]
}

MEMORY_FORGET_YES, MEMORY_KEEP = "memory:forget:", "memory:keep"
MAX_FORGET_WORDS = 100  # characters; a sentence is not what /memory forget is for
_MEMORY_FORGET = re.compile(r"^/memory(?:@\w+)?\s+forget\s+(.+)$", re.IGNORECASE | re.DOTALL)


async def _forget_answer(query: CallbackQuery) -> bool:
    return query.data in (FORGET_YES, FORGET_NO)


async def _memory_answer(query: CallbackQuery) -> bool:
    return query.data is not None and (query.data.startswith(MEMORY_FORGET_YES) or query.data == MEMORY_KEEP)


def _memory_buttons(command_id: int) -> dict[str, object]:
    return {
        "inline_keyboard": [
            [
                {"text": texts.MEMORY_FORGET_YES, "callback_data": f"{MEMORY_FORGET_YES}{command_id}"},
                {"text": texts.MEMORY_FORGET_NO, "callback_data": MEMORY_KEEP},
            ]
        ]
    }


@cache
def _zones() -> dict[str, str]:
    """Every IANA zone this machine knows, by its lower-case name (read once)."""
    return {name.lower(): name for name in available_timezones()}


def known_zone(name: str) -> str | None:
    """The zone's proper name, or None: anything else (a folder like "Europe", a 5,000-letter
    word, a path) never reaches ZoneInfo."""
    return _zones().get(name.strip().lower()) if len(name) <= 64 else None


@router.message(CommandStart())
async def cmd_start(
    message: Message, command: CommandObject, unit: UpdateUnit, commands: CommandService, access: AccessDesk
) -> None:
    """Hello; with a code (`t.me/<bot>?start=<code>`), an invite redeemed first."""
    said = "/start" if command.args else (message.text or "/start")  # an invite code is never stored
    code = (command.args or "").strip()
    waiting_for = await access.needs_code(unit.tx, unit.user.user_id)
    if code and waiting_for in ("allowlist", "invite", "approval"):
        redeemed = await access.redeem(unit.tx, unit.user.user_id, code)
        if redeemed.outcome is Redeemed.WRONG:
            await commands.answer(unit, texts.CODE_WRONG, command=said)
            return
        if redeemed.outcome is Redeemed.TOO_MANY:
            until = f"{redeemed.retry_at:%H:%M}" if redeemed.retry_at else "in an hour"
            await commands.answer(unit, texts.CODE_TOO_MANY.format(until=until), command=said)
            return
        if redeemed.outcome is Redeemed.BUSY:
            await commands.answer(unit, texts.CODE_BUSY, command=said)
            return
    elif waiting_for in ("allowlist", "invite"):
        await commands.answer(unit, getattr(commands.persona.notices, waiting_for), command=said)
        return
    await commands.greet(unit, command=said)


@router.message(Command("clear"))
async def cmd_clear(message: Message, unit: UpdateUnit, commands: CommandService) -> None:
    await commands.reset(unit, command=message.text or "/clear")
    await commands.answer(unit, texts.CLEARED)


@router.message(Command("help"))
async def cmd_help(message: Message, unit: UpdateUnit, commands: CommandService, access: AccessDesk) -> None:
    admin = access.is_admin(message.from_user.id if message.from_user else None)
    await commands.answer(unit, texts.HELP + (texts.ADMIN_HELP if admin else ""), command=message.text)


@router.message(Command("forget"))
async def cmd_forget(message: Message, unit: UpdateUnit, commands: CommandService) -> None:
    await commands.answer(unit, texts.FORGET_CONFIRM, command=message.text, reply_markup=FORGET_KEYBOARD)


@router.callback_query(_forget_answer)
async def on_forget_answer(query: CallbackQuery, unit: UpdateUnit, commands: CommandService) -> None:
    if query.data == FORGET_YES:
        removed = await commands.forget(unit)
        log.info("user_forgotten", users_removed=removed)
        text = texts.FORGOTTEN
    else:
        text = texts.FORGET_KEPT
    if query.message is not None:
        await commands.edit(unit, query.message.message_id, text)
    with contextlib.suppress(TelegramAPIError):  # only stops the button's spinner; the edit says it all
        await query.answer()


@router.message(Command("memory"))
async def cmd_memory(
    message: Message, command: CommandObject, unit: UpdateUnit, commands: CommandService, friend: Friend
) -> None:
    verb, _, words = (command.args or "").strip().partition(" ")
    if not verb:
        shown = memory_text(await commands.remembered(unit))
        coming = [item for item in await friend.followups.coming(unit.tx, unit.chat_id) if item.kind == "plan"]
        if coming:
            zone = ZoneInfo(await commands.timezone(unit) or friend.rules.default_tz)
            shown += "\n\n" + coming_text(coming, zone)
        await commands.answer(unit, shown, command=message.text)
    elif verb.lower() != "forget":
        await commands.answer(unit, texts.MEMORY_USAGE, command=message.text)
    elif not (words := " ".join(words.split())):
        await commands.answer(unit, texts.MEMORY_FORGET_USAGE, command=message.text)
    elif len(words) > MAX_FORGET_WORDS or not await commands.searchable(unit, words):
        await commands.answer(unit, texts.MEMORY_FORGET_TOO_COMMON, command=message.text)
    else:
        await commands.ask_to_forget(
            unit, f"/memory forget {words}", texts.MEMORY_FORGET_CONFIRM.format(words=words), _memory_buttons
        )


def memory_text(remembered: Remembered) -> str:
    """What /memory shows: the notes, the recent days, how much recall reaches, in plain words."""
    if not remembered.notebook and not remembered.days and not remembered.recallable:
        return texts.MEMORY_EMPTY
    parts = [texts.MEMORY_HEADING]
    if remembered.notebook:
        parts.append(texts.MEMORY_NOTEBOOK.format(notebook=remembered.notebook))
    if remembered.days:
        parts.append("\n".join([texts.MEMORY_DAYS, *(f"- {d.day:%A %d %B}: {d.text}" for d in remembered.days)]))
    if remembered.recallable:
        parts.append(texts.MEMORY_RECALL.format(count=remembered.recallable))
    parts.append(texts.MEMORY_FOOTER)
    return "\n\n".join(parts)


@router.callback_query(_memory_answer)
async def on_memory_forget_answer(query: CallbackQuery, unit: UpdateUnit, commands: CommandService) -> None:
    text = texts.MEMORY_KEPT
    asked = (query.data or "").removeprefix(MEMORY_FORGET_YES)
    if query.data != MEMORY_KEEP and asked.isdigit():
        stored = await commands.stored_command(unit, int(asked))
        match = _MEMORY_FORGET.match(stored or "")
        if match is not None:
            words = match.group(1)
            forgotten = await commands.forget_memory(unit, words)
            if forgotten is None or not (forgotten.messages or forgotten.notebook_lines or forgotten.day_lines):
                text = texts.MEMORY_NOTHING_FOUND.format(words=words)
            else:
                text = texts.MEMORY_FORGOTTEN.format(
                    words=words, messages=forgotten.messages, lines=forgotten.notebook_lines + forgotten.day_lines
                )
    if query.message is not None:
        await commands.edit(unit, query.message.message_id, text)
    with contextlib.suppress(TelegramAPIError):
        await query.answer()


@router.message(Command("export"))
async def cmd_export(message: Message, unit: UpdateUnit, commands: CommandService) -> None:
    data = await commands.export(unit)
    if data is None:
        await commands.answer(unit, texts.EXPORT_EMPTY, command=message.text)
        return
    await commands.send_document(
        unit,
        filename="aifriend-export.json",
        content=json.dumps(data, ensure_ascii=False, indent=2),
        caption=texts.EXPORT_CAPTION,
        command=message.text or "/export",
    )


@router.message(Command("checkins"))
async def cmd_checkins(message: Message, command: CommandObject, unit: UpdateUnit, commands: CommandService) -> None:
    choice = (command.args or "").strip().lower()
    if choice not in ("on", "off"):
        state = "on" if await commands.checkins_enabled(unit) else "off"
        await commands.answer(unit, texts.CHECKINS_USAGE.format(state=state), command=message.text)
        return
    await commands.set_checkins(unit, choice == "on")
    await commands.answer(unit, texts.CHECKINS_ON if choice == "on" else texts.CHECKINS_OFF, command=message.text)


@router.message(Command("timezone"))
async def cmd_timezone(message: Message, command: CommandObject, unit: UpdateUnit, commands: CommandService) -> None:
    asked = (command.args or "").strip()
    if not asked:
        await commands.answer(unit, texts.TIMEZONE_USAGE, command=message.text)
        return
    zone = known_zone(asked)
    if zone is None:
        shown = asked if len(asked) <= 40 else asked[:40] + "…"
        await commands.answer(unit, texts.TIMEZONE_UNKNOWN.format(zone=shown), command=message.text)
        return
    await commands.set_timezone(unit, zone)
    local = datetime.now(UTC).astimezone(ZoneInfo(zone)).strftime("%H:%M")
    await commands.answer(unit, texts.TIMEZONE_SET.format(zone=zone, local=local), command=message.text)


@router.message(text_command)
async def on_unknown_command(message: Message, unit: UpdateUnit, commands: CommandService) -> None:
    await commands.answer(unit, texts.UNKNOWN_COMMAND, command=message.text)
