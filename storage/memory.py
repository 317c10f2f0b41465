"""Long-term memory: the rolling summary, the per-day summaries, and forgetting on request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from storage.database import Executor
from storage.rows import DailySummaryRow
from storage.sql import Statement

_DAYS = Statement("""
    SELECT day, text FROM daily_summaries WHERE chat_id = :chat_id AND day < :before ORDER BY day DESC LIMIT :limit
""")
_HAS_DAY = Statement("SELECT EXISTS (SELECT 1 FROM daily_summaries WHERE chat_id = :chat_id AND day = :day)")
_SAVE_DAY = Statement("""
    INSERT INTO daily_summaries (chat_id, day, text, through_message_id)
    VALUES (:chat_id, :day, :text, :through_message_id)
    ON CONFLICT (chat_id, day) DO UPDATE
       SET text = EXCLUDED.text, through_message_id = EXCLUDED.through_message_id, updated_at = now()
""")
# Replaced only if no other worker folded first.
_FOLD = Statement("""
    UPDATE conversations SET memory_summary = :summary, summarized_through_id = :through, prompt_stage = state
     WHERE chat_id = :chat_id AND summarized_through_id = :expected_through
    RETURNING chat_id
""")
_REMEMBERED = Statement("""
    SELECT c.memory_summary AS notebook,
           (SELECT coalesce(json_agg(d ORDER BY d.day), '[]') FROM (
               SELECT day, text FROM daily_summaries WHERE chat_id = c.chat_id ORDER BY day DESC LIMIT :days) AS d)
               AS days,
           (SELECT count(*) FROM messages AS m
             WHERE m.chat_id = c.chat_id AND m.search IS NOT NULL AND m.recallable) AS recallable
      FROM conversations AS c WHERE c.chat_id = :chat_id
""")
_REFRESH_COMMON_WORDS = Statement("SELECT aifriend_refresh_common_words()")
# The user's words as a query in their language (every word must be there, stemmed); NULL when
# nothing is left of them after stop words.
_FORGET_QUERY = Statement("""
    SELECT CASE WHEN numnode(q) > 0 THEN q::text END
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id,
           plainto_tsquery(aifriend_text_config(u.language_code), :words) AS q
     WHERE c.chat_id = :chat_id
""")
_LOCK_NOTEBOOK = Statement("""
    SELECT c.memory_summary AS notebook, u.language_code AS language
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE c.chat_id = :chat_id FOR UPDATE OF c
""")
_MATCHING_LINES = Statement("""
    SELECT s.n FROM unnest(CAST(:lines AS text[])) WITH ORDINALITY AS s(line, n)
     WHERE to_tsvector(aifriend_text_config(CAST(:language AS text)), s.line) @@ CAST(:query AS tsquery)
""")
_FORGET_MESSAGES = Statement("""
    WITH forgotten AS (
        UPDATE messages AS m SET recallable = false
         WHERE m.chat_id = :chat_id AND m.recallable
           AND to_tsvector(aifriend_text_config(CAST(:language AS text)), m.text) @@ CAST(:query AS tsquery)
        RETURNING 1
    ), notes AS (
        UPDATE messages AS m SET recall_note = NULL
         WHERE m.chat_id = :chat_id AND m.recall_note IS NOT NULL
           AND to_tsvector(aifriend_text_config(CAST(:language AS text)), m.recall_note) @@ CAST(:query AS tsquery)
    )
    SELECT count(*) FROM forgotten
""")
_SET_NOTEBOOK = Statement("UPDATE conversations SET memory_summary = :notebook WHERE chat_id = :chat_id")
_ALL_DAYS = Statement("SELECT day, text FROM daily_summaries WHERE chat_id = :chat_id")
_SET_DAY = Statement(
    "UPDATE daily_summaries SET text = :text, updated_at = now() WHERE chat_id = :chat_id AND day = :day"
)
_DROP_DAY = Statement("DELETE FROM daily_summaries WHERE chat_id = :chat_id AND day = :day")
_RECORD_FORGET = Statement("""
    INSERT INTO memory_forgets (chat_id, words, messages, notebook_lines, day_lines)
    VALUES (:chat_id, :words, :messages, :notebook_lines, :day_lines)
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
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def days(self, chat_id: int, before: date, limit: int) -> list[DailySummaryRow]:
        """The latest day summaries before `before`, oldest first."""
        rows = await self.executor.fetch(_DAYS, chat_id=chat_id, before=before, limit=limit)
        return [DailySummaryRow(row["day"], row["text"]) for row in reversed(rows)]

    async def has_day(self, chat_id: int, day: date) -> bool:
        return bool(await self.executor.fetchval(_HAS_DAY, chat_id=chat_id, day=day))

    async def save_day(self, chat_id: int, day: date, text: str, through_message_id: int) -> None:
        await self.executor.execute(
            _SAVE_DAY, chat_id=chat_id, day=day, text=text, through_message_id=through_message_id
        )

    async def fold(self, chat_id: int, *, expected_through: int, through: int, summary: str) -> bool:
        """Replace the rolling summary unless another worker folded first."""
        done = await self.executor.fetchval(
            _FOLD, chat_id=chat_id, expected_through=expected_through, through=through, summary=summary
        )
        return done is not None

    async def remembered(self, chat_id: int, days: int) -> Remembered:
        """What the friend keeps about a chat, for /memory."""
        row = await self.executor.fetchrow(_REMEMBERED, chat_id=chat_id, days=days)
        if row is None:
            return Remembered(None, [], 0)
        kept = [DailySummaryRow(date.fromisoformat(d["day"]), d["text"]) for d in row["days"]]
        return Remembered(row["notebook"], kept, int(row["recallable"]))

    async def refresh_common_words(self) -> int:
        """Words too common to recall by, from PostgreSQL's latest statistics of the messages; how many."""
        return int(await self.executor.fetchval(_REFRESH_COMMON_WORDS) or 0)

    async def forget_query(self, chat_id: int, words: str) -> str | None:
        """The words as a search query in the user's language; None when only stop words are left."""
        query: str | None = await self.executor.fetchval(_FORGET_QUERY, chat_id=chat_id, words=words)
        return query

    async def forget(self, chat_id: int, words: str) -> Forgotten | None:
        """Remove what mentions `words` from the memory: sentences of the notebook and day summaries,
        and messages from recall and prompts (kept for operators). Recorded in memory_forgets.
        None when the words are too common to search by. Several statements: run it in a transaction."""
        query = await self.forget_query(chat_id, words)
        row = await self.executor.fetchrow(_LOCK_NOTEBOOK, chat_id=chat_id)
        if query is None or row is None:
            return None
        language, which = row["language"], {"chat_id": chat_id, "query": query}
        messages = int(await self.executor.fetchval(_FORGET_MESSAGES, language=language, **which))
        kept, notebook_lines = await self._without(row["notebook"] or "", language, query)
        if notebook_lines:
            await self.executor.execute(_SET_NOTEBOOK, chat_id=chat_id, notebook=kept or None)
        day_lines = 0
        for day in await self.executor.fetch(_ALL_DAYS, chat_id=chat_id):
            kept, removed = await self._without(day["text"], language, query)
            if removed:
                day_lines += removed
                if kept:
                    await self.executor.execute(_SET_DAY, chat_id=chat_id, day=day["day"], text=kept)
                else:
                    await self.executor.execute(_DROP_DAY, chat_id=chat_id, day=day["day"])
        forgotten = Forgotten(messages, notebook_lines, day_lines)
        await self.executor.execute(
            _RECORD_FORGET,
            chat_id=chat_id,
            words=words,
            messages=messages,
            notebook_lines=notebook_lines,
            day_lines=day_lines,
        )
        return forgotten

    async def _without(self, text: str, language: str | None, query: str) -> tuple[str, int]:
        """`text` without its sentences that match `query`, and how many went."""
        lines = sentences(text)
        if not lines:
            return text, 0
        rows = await self.executor.fetch(_MATCHING_LINES, lines=lines, language=language, query=query)
        matching = {row["n"] for row in rows}
        if not matching:
            return text, 0
        return " ".join(line for n, line in enumerate(lines, 1) if n not in matching), len(matching)
