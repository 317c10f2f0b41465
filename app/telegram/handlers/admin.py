"""Operator commands for ADMIN_IDS only; anyone else gets silence, as if they did not exist."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from app.reports import format_conversation, format_stats
from app.services.commands import CommandService, UpdateUnit
from app.services.operators import OperatorReports
from app.telegram.filters import looks_like_command

router = Router(name=__name__)
router.message.filter(looks_like_command)  # plain text passes this router in one check


def _is_admin(message: Message, admin_ids: frozenset[int]) -> bool:
    return message.from_user is not None and message.from_user.id in admin_ids


@router.message(Command("inspect"))
async def cmd_inspect(
    message: Message,
    command: CommandObject,
    reports: OperatorReports,
    admin_ids: frozenset[int],
    unit: UpdateUnit,
    commands: CommandService,
) -> None:
    if not _is_admin(message, admin_ids):
        return
    argument = (command.args or "").strip()
    if not argument.lstrip("-").isdigit() or len(argument) > 20:
        await commands.answer(unit, "Usage: /inspect CHAT_ID", command=message.text)
        return
    report = await reports.conversation(int(argument))
    text = format_conversation(report) if report else f"No conversation {argument}."
    await commands.answer(unit, text, command=message.text)


@router.message(Command("stats"))
async def cmd_stats(
    message: Message, reports: OperatorReports, admin_ids: frozenset[int], unit: UpdateUnit, commands: CommandService
) -> None:
    if not _is_admin(message, admin_ids):
        return
    await commands.answer(unit, format_stats(await reports.stats()), command=message.text)
