"""What operators ask for: one conversation in detail, and all of them in numbers (from the views)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from storage.database import Executor
from storage.sql import Statement


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


_OVERVIEW = Statement("SELECT * FROM conversation_overview WHERE chat_id = :chat_id")
_TRANSITIONS = Statement("SELECT * FROM state_transition_log WHERE chat_id = :chat_id ORDER BY id DESC LIMIT :last")
_MESSAGES = Statement("SELECT * FROM message_log WHERE chat_id = :chat_id ORDER BY id DESC LIMIT :last")
_STATES = Statement("SELECT state, count(*) AS chats FROM conversations GROUP BY state")
_DAYS = Statement("""
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE role = 'user' AND kind IN ('text', 'voice')) AS users,
           count(*) FILTER (WHERE role = 'assistant' AND kind <> 'checkin') AS bots,
           count(*) FILTER (WHERE kind = 'checkin') AS checkins
      FROM messages
     WHERE created_at >= now() - make_interval(days => :days)
     GROUP BY 1 ORDER BY 1
""")
# The newest rows of the two operator views of what was set aside or given up.
_TROUBLE = {
    view: Statement(
        f"SELECT *, count(*) OVER () AS total FROM {view}"  # fixed view names, never input
        " WHERE created_at >= now() - make_interval(days => :days) ORDER BY id DESC LIMIT :last"
    )
    for view in ("dead_letter_log", "failed_send_log")
}
_PENDING_SENDS = Statement("SELECT count(*) FROM outbox WHERE status = 'pending'")


async def conversation_report(executor: Executor, chat_id: int, *, last: int = 10) -> ConversationReport | None:
    overview = await executor.fetchrow(_OVERVIEW, chat_id=chat_id)
    if overview is None:
        return None
    transitions = await executor.fetch(_TRANSITIONS, chat_id=chat_id, last=last)
    messages = await executor.fetch(_MESSAGES, chat_id=chat_id, last=last)
    return ConversationReport(
        dict(overview), [dict(t) for t in reversed(transitions)], [dict(m) for m in reversed(messages)]
    )


async def stats_report(executor: Executor, *, days: int = 14, last: int = 10) -> StatsReport:
    states = {str(row["state"]): int(row["chats"]) for row in await executor.fetch(_STATES)}
    rows = await executor.fetch(_DAYS, days=days)
    trouble = {
        view: [dict(r) for r in await executor.fetch(query, days=days, last=last)] for view, query in _TROUBLE.items()
    }
    return StatsReport(
        states,
        [(row["day"], int(row["users"]), int(row["bots"]), int(row["checkins"])) for row in rows],
        dead_letters=trouble["dead_letter_log"],
        failed_sends=trouble["failed_send_log"],
        pending_sends=int(await executor.fetchval(_PENDING_SENDS)),
    )
