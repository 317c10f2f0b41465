"""Long-term memory: the rolling summary, the per-day summaries, and forgetting on request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.dto import DailySummaryRow
from storage.models import Conversation, DailySummary, MemoryForget, Message, table_of

_DAY_COLUMNS = table_of(DailySummary).c
_DAYS = (  # built once, on the table, as the reply path's statements are (see storage.conversations)
    select(_DAY_COLUMNS.day, _DAY_COLUMNS.text)
    .where(_DAY_COLUMNS.chat_id == bindparam("b_chat_id"), _DAY_COLUMNS.day < bindparam("b_before"))
    .order_by(_DAY_COLUMNS.day.desc())
    .limit(bindparam("b_limit"))
)


# The user's words as a query in their language (every word must be there, stemmed); NULL when
# nothing is left of them after stop words.
_FORGET_QUERY = sql("""
    SELECT CASE WHEN numnode(q) > 0 THEN q::text END
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id,
           plainto_tsquery(aifriend_text_config(u.language_code), :words) AS q
     WHERE c.chat_id = :chat_id
""")
_MATCHING_LINES = sql("""
    SELECT s.n FROM unnest(CAST(:lines AS text[])) WITH ORDINALITY AS s(line, n)
     WHERE to_tsvector(aifriend_text_config(:language), s.line) @@ CAST(:query AS tsquery)
""")
_FORGET_MESSAGES = sql("""
    UPDATE messages AS m SET recallable = false
     WHERE m.chat_id = :chat_id AND m.recallable
       AND to_tsvector(aifriend_text_config(:language), m.text) @@ CAST(:query AS tsquery)
""")
_FORGET_NOTES = sql("""
    UPDATE messages AS m SET recall_note = NULL
     WHERE m.chat_id = :chat_id AND m.recall_note IS NOT NULL
       AND to_tsvector(aifriend_text_config(:language), m.recall_note) @@ CAST(:query AS tsquery)
""")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def sentences(text: str) -> list[str]:
    """A summary's sentences (or lines), the unit that /memory forget removes."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


@dataclass(frozen=True, slots=True)
class Forgotten:
    messages: int  # no longer recalled or shown to the model
    notebook_lines: int
    day_lines: int


@dataclass(frozen=True, slots=True)
class Remembered:
    notebook: str | None
    days: list[DailySummaryRow]  # newest last
    recallable: int  # older messages recall can bring back


class MemoryRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def days(self, chat_id: int, before: date, limit: int) -> list[DailySummaryRow]:
        """The latest day summaries before `before`, oldest first."""
        params = {"b_chat_id": chat_id, "b_before": before, "b_limit": limit}
        rows = (await self.session.execute(_DAYS, params)).all()
        return [DailySummaryRow(day, text) for day, text in reversed(rows)]

    async def has_day(self, chat_id: int, day: date) -> bool:
        found = await self.session.scalar(
            select(DailySummary.day).where(DailySummary.chat_id == chat_id, DailySummary.day == day)
        )
        return found is not None

    async def save_day(self, chat_id: int, day: date, text: str, through_message_id: int) -> None:
        await self.session.execute(
            insert(DailySummary)
            .values(chat_id=chat_id, day=day, text=text, through_message_id=through_message_id)
            .on_conflict_do_update(
                index_elements=[DailySummary.chat_id, DailySummary.day],
                set_={"text": text, "through_message_id": through_message_id, "updated_at": func.now()},
            )
        )

    async def fold(self, chat_id: int, *, expected_through: int, through: int, summary: str) -> bool:
        """Replace the rolling summary unless another worker folded first."""
        done = await self.session.scalar(
            update(Conversation)
            .where(Conversation.chat_id == chat_id, Conversation.summarized_through_id == expected_through)
            .values(memory_summary=summary, summarized_through_id=through)
            .returning(Conversation.chat_id)
        )
        return done is not None

    async def remembered(self, chat_id: int, days: int) -> Remembered:
        """What the friend keeps about a chat, for /memory."""
        notebook = await self.session.scalar(select(Conversation.memory_summary).where(Conversation.chat_id == chat_id))
        rows = (
            await self.session.execute(
                select(DailySummary.day, DailySummary.text)
                .where(DailySummary.chat_id == chat_id)
                .order_by(DailySummary.day.desc())
                .limit(days)
            )
        ).all()
        recallable = await self.session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.chat_id == chat_id, Message.search.is_not(None), Message.recallable)
        )
        return Remembered(notebook, [DailySummaryRow(day, text) for day, text in reversed(rows)], int(recallable or 0))

    async def refresh_common_words(self) -> int:
        """Words too common to recall by, from PostgreSQL's latest statistics of the messages; how many."""
        return int(await self.session.scalar(sql("SELECT aifriend_refresh_common_words()")) or 0)

    async def forget_query(self, chat_id: int, words: str) -> str | None:
        """The words as a search query in the user's language; None when only stop words are left."""
        query: str | None = await self.session.scalar(_FORGET_QUERY, {"chat_id": chat_id, "words": words})
        return query

    async def forget(self, chat_id: int, words: str) -> Forgotten | None:
        """Remove what mentions `words` from the memory: sentences of the notebook and day summaries,
        and messages from recall and prompts (kept for operators). Recorded in memory_forgets.
        None when the words are too common to search by."""
        query = await self.forget_query(chat_id, words)
        row = (
            await self.session.execute(
                select(Conversation.memory_summary, Conversation.user_id)
                .where(Conversation.chat_id == chat_id)
                .with_for_update()
            )
        ).first()
        if query is None or row is None:
            return None
        notebook, user_id = row
        language = await self.session.scalar(sql("SELECT language_code FROM users WHERE id = :id"), {"id": user_id})
        messages = await self.session.execute(
            _FORGET_MESSAGES, {"chat_id": chat_id, "language": language, "query": query}
        )
        await self.session.execute(_FORGET_NOTES, {"chat_id": chat_id, "language": language, "query": query})
        kept, notebook_lines = await self._without(notebook or "", language, query)
        if notebook_lines:
            await self.session.execute(
                update(Conversation).where(Conversation.chat_id == chat_id).values(memory_summary=kept or None)
            )
        day_lines = 0
        days = (
            await self.session.execute(
                select(DailySummary.day, DailySummary.text).where(DailySummary.chat_id == chat_id)
            )
        ).all()
        for day, text in days:
            kept, removed = await self._without(text, language, query)
            if removed:
                day_lines += removed
                that_day = (DailySummary.chat_id == chat_id, DailySummary.day == day)
                await self.session.execute(
                    update(DailySummary).where(*that_day).values(text=kept, updated_at=func.now())
                    if kept
                    else delete(DailySummary).where(*that_day)
                )
        forgotten = Forgotten(int(messages.rowcount or 0), notebook_lines, day_lines)  # type: ignore[attr-defined]
        self.session.add(
            MemoryForget(
                chat_id=chat_id,
                words=words,
                messages=forgotten.messages,
                notebook_lines=notebook_lines,
                day_lines=day_lines,
            )
        )
        await self.session.flush()
        return forgotten

    async def _without(self, text: str, language: str | None, query: str) -> tuple[str, int]:
        """`text` without its sentences that match `query`, and how many went."""
        lines = sentences(text)
        if not lines:
            return text, 0
        matching = set(
            await self.session.scalars(_MATCHING_LINES, {"lines": lines, "language": language, "query": query})
        )
        if not matching:
            return text, 0
        return " ".join(line for n, line in enumerate(lines, 1) if n not in matching), len(matching)
