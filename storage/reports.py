"""What operators ask for: one conversation in detail, and all of them in numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class ConversationReport:
    overview: dict[str, Any]
    transitions: list[dict[str, Any]]
    messages: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StatsReport:
    states: dict[str, int]
    days: list[tuple[date, int, int, int]]  # day, user messages, bot messages, check-ins
    dead_letters: list[dict[str, Any]]  # newest first, from dead_letter_log
    failed_sends: list[dict[str, Any]]  # newest first, from failed_send_log
    pending_sends: int


async def conversation_report(session: AsyncSession, chat_id: int, *, last: int = 10) -> ConversationReport | None:
    overview = (
        (await session.execute(text("SELECT * FROM conversation_overview WHERE chat_id = :c"), {"c": chat_id}))
        .mappings()
        .first()
    )
    if overview is None:
        return None
    transitions = (
        (
            await session.execute(
                text("SELECT * FROM state_transition_log WHERE chat_id = :c ORDER BY id DESC LIMIT :n"),
                {"c": chat_id, "n": last},
            )
        )
        .mappings()
        .all()
    )
    messages = (
        (
            await session.execute(
                text("SELECT * FROM message_log WHERE chat_id = :c ORDER BY id DESC LIMIT :n"),
                {"c": chat_id, "n": last},
            )
        )
        .mappings()
        .all()
    )
    return ConversationReport(
        dict(overview), [dict(t) for t in reversed(transitions)], [dict(m) for m in reversed(messages)]
    )


async def stats_report(session: AsyncSession, *, days: int = 14) -> StatsReport:
    states: dict[str, int] = {
        str(state): int(count)
        for state, count in await session.execute(text("SELECT state, count(*) FROM conversations GROUP BY state"))
    }
    rows = (
        await session.execute(
            text(
                """
                SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                       count(*) FILTER (WHERE role = 'user' AND kind = 'text'),
                       count(*) FILTER (WHERE role = 'assistant' AND kind <> 'checkin'),
                       count(*) FILTER (WHERE kind = 'checkin')
                  FROM messages
                 WHERE created_at >= now() - make_interval(days => :days)
                 GROUP BY 1 ORDER BY 1
                """
            ),
            {"days": days},
        )
    ).all()
    trouble = await _recent_trouble(session, days=days)
    pending = await session.scalar(text("SELECT count(*) FROM outbox WHERE status = 'pending'"))
    return StatsReport(
        states,
        [(day, int(users), int(bots), int(checkins)) for day, users, bots, checkins in rows],
        dead_letters=trouble["dead_letter_log"],
        failed_sends=trouble["failed_send_log"],
        pending_sends=int(pending or 0),
    )


async def _recent_trouble(session: AsyncSession, *, days: int, last: int = 10) -> dict[str, list[dict[str, Any]]]:
    """The newest rows of the two operator views of what was set aside or given up."""
    found: dict[str, list[dict[str, Any]]] = {}
    for view in ("dead_letter_log", "failed_send_log"):
        rows = await session.execute(
            text(
                f"SELECT *, count(*) OVER () AS total FROM {view}"  # fixed view names, never input
                " WHERE created_at >= now() - make_interval(days => :days) ORDER BY id DESC LIMIT :n"
            ),
            {"days": days, "n": last},
        )
        found[view] = [dict(row) for row in rows.mappings()]
    return found
