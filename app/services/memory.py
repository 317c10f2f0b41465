"""Long-term memory, kept off the reply path: the rolling summary and the day summaries.

Summaries are written by the model from the conversation's own lines (what the user said,
and what the friend answered), never from the system prompt. The rolling summary folds
the oldest unsummarized turns in once they outgrow their share of the prompt budget, so
the prompt stays the same size however long the conversation gets.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog

from app.persona import Persona
from app.prompt import Turn, clip, transcript, with_note
from app.services.model_queue import FairQueue, Priority
from fsm import Stage
from llm.errors import LLMError
from llm.routing import for_chat
from llm.types import ChatMessage, ChatModel, GenerationParams, estimate_tokens
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.memory import MemoryRepo
from storage.messages import MessageRepo
from storage.rows import MessageRow

log = structlog.get_logger(__name__)

HISTORY_SHARE = 0.7  # of the prompt budget; the rest is the system prompt, the memory and notes
# Fold when unsummarized turns fill FOLD_AT of their share, down to KEEP (the newest few turns
# kept verbatim, so the reply after a fold still sees the last exchange). Every fold changes the
# prompt's start, which the model server's prefix cache then cannot reuse: folding nearly all,
# as late as possible, leaves the prompts append-only for the longest stretches
# (docs/performance.md, `tests/bench/bench_everyday.py`).
FOLD_AT = 0.95
KEEP = 0.1
SUMMARY_PARAMS = GenerationParams(temperature=0.3, top_p=0.9, max_new_tokens=300, repetition_penalty=1.05)
_KINDS = frozenset({"text", "voice", "reply", "checkin", "greeting", "fallback"})


def _cost(message: MessageRow) -> int:
    """What a turn takes of the prompt: its text and the recall note shown with it."""
    return estimate_tokens(with_note(message.text, message.recall_note)) + 12


class MemoryKeeper:
    def __init__(
        self, *, database: Database, model: ChatModel, persona: Persona, queue: FairQueue | None = None
    ) -> None:
        self.database = database
        self.model = model
        self.persona = persona
        self.queue = queue or FairQueue(0)
        self._reply_tokens = max(persona.style(stage).max_new_tokens for stage in Stage)

    async def refresh_common_words(self) -> int:
        """Recall skips words in more than 0.2 % of all messages; which ones changes as the table
        grows (autovacuum's ANALYZE updates the statistics), so the bot re-reads them hourly."""
        return await MemoryRepo(self.database).refresh_common_words()

    async def history_budget(self) -> int:
        limits = await self.model.limits()
        prompt_budget = min(limits.max_input_tokens, limits.max_total_tokens - self._reply_tokens)
        return max(64, int(prompt_budget * HISTORY_SHARE))

    async def _summary_params(self) -> GenerationParams:
        limits = await self.model.limits()
        room = max(32, min(SUMMARY_PARAMS.max_new_tokens, limits.max_total_tokens // 6))
        return GenerationParams(
            temperature=SUMMARY_PARAMS.temperature,
            top_p=SUMMARY_PARAMS.top_p,
            max_new_tokens=room,
            repetition_penalty=SUMMARY_PARAMS.repetition_penalty,
        )

    async def should_fold(self, recent: list[MessageRow]) -> bool:
        """Cheap check on what the reply already read: are unsummarized turns over their share?"""
        try:
            budget = await self.history_budget()
        except LLMError:
            return False
        return sum(_cost(m) for m in recent if m.kind in _KINDS) > budget * FOLD_AT

    async def fold_if_needed(self, chat_id: int) -> int:
        """Fold old turns into the rolling summary while they are over their share; returns folds made."""
        try:
            with for_chat(chat_id):  # on the replica that holds the chat's prefix, like its replies
                return await self._fold(chat_id)
        except LLMError as exc:  # the next reply will try again
            log.warning("memory_fold_failed", error=str(exc))
            return 0

    async def _fold(self, chat_id: int) -> int:
        folds = 0
        budget = await self.history_budget()
        while True:
            row = await ConversationRepo(self.database).get(chat_id)
            if row is None:
                return folds
            unsummarized = await MessageRepo(self.database).recent(chat_id, row.summarized_through_id, 1000)
            kept = [m for m in unsummarized if m.kind in _KINDS]
            if sum(_cost(m) for m in kept) <= budget * FOLD_AT or not kept:
                return folds
            fold: list[MessageRow] = []
            remaining, folded = sum(_cost(m) for m in kept), 0
            for message in kept:
                if remaining <= budget * KEEP or folded >= budget:
                    break
                fold.append(message)
                remaining -= _cost(message)
                folded += _cost(message)
            if not fold:
                return folds
            summary = await self._summarize_turns(row.memory_summary, [Turn(m.role, m.text) for m in fold], budget)
            if summary is None:
                return folds
            done = await MemoryRepo(self.database).fold(
                chat_id, expected_through=row.summarized_through_id, through=fold[-1].id, summary=summary
            )
            if not done:  # another worker folded first; look again
                continue
            folds += 1
            log.info("memory_folded", through_message_id=fold[-1].id, turns=len(fold), summary_chars=len(summary))

    async def _summarize_turns(self, notebook: str | None, turns: list[Turn], budget: int) -> str | None:
        lines = clip(transcript(turns, friend=self.persona.name), budget * 3)
        request = [
            ChatMessage("system", self.persona.prompts.summary),
            ChatMessage("user", f"{notebook}\n{lines}" if notebook else lines),
        ]
        try:
            async with self.queue.slot(Priority.BACKGROUND):
                completion = await self.model.complete(request, await self._summary_params())
        except LLMError as exc:
            log.warning("memory_fold_failed", error=str(exc))
            return None
        return completion.text.strip() or None

    async def summarize_day(self, chat_id: int, day: date, zone: ZoneInfo) -> bool:
        """Write the summary of one calendar day (in the user's zone) if it is missing."""
        with for_chat(chat_id):
            return await self._summarize_day(chat_id, day, zone)

    async def _summarize_day(self, chat_id: int, day: date, zone: ZoneInfo) -> bool:
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        if await MemoryRepo(self.database).has_day(chat_id, day):
            return False
        messages = await MessageRepo(self.database).on_day(chat_id, start, end, 300)
        kept = [m for m in messages if m.kind in _KINDS]
        if not kept:
            return False
        try:
            budget = await self.history_budget()
            lines = clip(transcript([Turn(m.role, m.text) for m in kept], friend=self.persona.name), budget * 3)
            request = [ChatMessage("system", self.persona.prompts.daily), ChatMessage("user", lines)]
            async with self.queue.slot(Priority.BACKGROUND):
                completion = await self.model.complete(request, await self._summary_params())
        except LLMError as exc:
            log.warning("day_summary_failed", day=day.isoformat(), error=str(exc))
            return False
        await MemoryRepo(self.database).save_day(chat_id, day, completion.text.strip(), kept[-1].id)
        log.info("day_summarized", day=day.isoformat(), messages=len(kept))
        return True
