"""Writing what the friend says: the prompt from what was read, the model call, the persona's
fallback line when the model cannot answer. Storing and sending it is the responder's.

A reply first waits for its turn in the fair queue (MODEL_CONCURRENCY), then at most `timeout`
(LLM_TIMEOUT) for the model, its streamed attempt and any retry together: then the user gets the
fallback line. The wait in our own queue never counts against the model's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from app.metrics import Metrics
from app.persona import Persona
from app.prompt import Memory, StageShift, Turn, build_prompt, build_prompt_with_recall, system_message, with_note
from app.services.drafts import DraftPreview
from app.services.model_queue import FairQueue, Priority
from app.services.text import storable
from app.services.values import ReplyContext
from fsm import Stage
from llm.errors import GenerationFailedError, LLMError, ModelUnavailableError, PromptTooLongError
from llm.routing import for_chat
from llm.sentiment import detect_crisis
from llm.types import ChatMessage, ChatModel, GenerationParams, estimate_prompt_tokens, estimate_tokens
from storage.rows import ConversationRow, DailySummaryRow, MessageRow

log = structlog.get_logger(__name__)

PROMPT_KINDS = frozenset({"text", "voice", "reply", "checkin", "greeting", "fallback", "followup", "reminder"})


@dataclass(frozen=True, slots=True)
class Written:
    """A reply's text and how it came to be, before it is stored."""

    text: str
    kind: str  # "reply", or "fallback" when the model could not answer
    stage: Stage
    crisis: bool
    prompt: tuple[ChatMessage, ...]
    note: str | None  # the recall note the prompt carried, kept with the message it answered
    tokens: int = 0  # what it cost the user's day: the prompt and the text, estimated


class ReplyWriter:
    def __init__(
        self,
        *,
        model: ChatModel,
        persona: Persona,
        metrics: Metrics,
        timeout: float = 30.0,
        queue: FairQueue | None = None,
    ) -> None:
        self.model = model
        self.persona = persona
        self.metrics = metrics
        self.timeout = timeout
        self.queue = queue or FairQueue(0, metrics)
        self._stage_prompts = {each.value: persona.style(each).system for each in Stage}

    async def write(
        self, context: ReplyContext, drafts: DraftPreview | None = None, priority: Priority = Priority.CONVERSATION
    ) -> Written:
        """The reply to what `context` owes; `drafts`: show the text as it is written."""
        with for_chat(context.conversation.chat_id):  # the chat's routing key, for a cache-aware router
            return await self._write(context, drafts, priority)

    async def _write(self, context: ReplyContext, drafts: DraftPreview | None, priority: Priority) -> Written:
        stage = Stage(context.conversation.state)
        crisis = any(detect_crisis(m.text) for m in context.pending)
        style = self.persona.style(Stage.REPAIR if crisis else stage)
        opening = Stage(context.conversation.prompt_stage)
        system = system_message(
            self.persona.prompts.safety if crisis else self.persona.style(opening).system,
            context.memory,
            self.persona.prompts.memory_heading,
        )
        shift = None if crisis else StageShift(stage.value, opening.value, self._stage_prompts)
        built = _Built()
        kind = "reply"
        try:
            async with self.queue.slot(priority):
                started = time.monotonic()
                async with asyncio.timeout(self.timeout):
                    budget = await self._budget(style.max_new_tokens)
                    built.prompt, built.note = build_prompt_with_recall(
                        system,
                        _turns(context),
                        budget_tokens=budget,
                        recalled=context.recalled,
                        recall_heading=self.persona.prompts.recall_heading,
                        known=context.memory.render(""),
                        stage=shift,
                    )
                    if drafts is not None and drafts.enabled:
                        text = await self._stream(built.prompt, style.params, drafts, context)
                    else:
                        text = await self.complete(built.prompt, style.params)
            self.metrics.observe("aifriend_model_seconds", time.monotonic() - started)
            self.metrics.set("aifriend_model_up", 1)
        except (LLMError, TimeoutError) as exc:
            unreachable = isinstance(exc, ModelUnavailableError | TimeoutError)
            error = str(exc) or f"no answer within LLM_TIMEOUT ({self.timeout:g} s)"
            log.warning("reply_fallback", error=error, error_type=exc.__class__.__name__)
            self.metrics.set("aifriend_model_up", 0 if unreachable else 1)
            text, kind = self.persona.fallback, "fallback"
        text = storable(text)
        if not text:
            text, kind = self.persona.fallback, "fallback"
        replied = kind == "reply"
        tokens = estimate_prompt_tokens(built.prompt) + estimate_tokens(text) if replied else 0
        return Written(text, kind, stage, crisis, tuple(built.prompt), built.note if replied else None, tokens)

    async def checkin(
        self,
        row: ConversationRow,
        recent: Sequence[MessageRow],
        days: Sequence[DailySummaryRow],
        instruction: str | None = None,
    ) -> str:
        """A check-in (or, with `instruction`, a follow-up) in the voice of the current stage,
        knowing the memory and the recent turns."""
        with for_chat(row.chat_id):
            return await self._checkin(row, recent, days, instruction)

    async def _checkin(
        self,
        row: ConversationRow,
        recent: Sequence[MessageRow],
        days: Sequence[DailySummaryRow],
        instruction: str | None,
    ) -> str:
        style = self.persona.style(Stage(row.state))
        memory = Memory(row.memory_summary, tuple((d.day, d.text) for d in days))
        system = system_message(style.system, memory, self.persona.prompts.memory_heading)
        turns = [Turn(m.role, m.text) for m in recent if m.kind in PROMPT_KINDS]
        # The instruction goes last as a user turn: chat templates expect to answer one.
        turns.append(Turn("user", instruction or self.persona.prompts.checkin))
        async with self.queue.slot(Priority.BACKGROUND), asyncio.timeout(self.timeout):
            budget = await self._budget(style.max_new_tokens)
            text = await self.complete(build_prompt(system, turns, budget_tokens=budget), style.params)
        if not text.strip():
            raise GenerationFailedError("the model wrote an empty check-in")
        return text.strip()

    async def complete(self, prompt: list[ChatMessage], params: GenerationParams) -> str:
        """One model call; if the exact count is over the limit, drop the oldest turns and retry."""
        while True:
            try:
                return (await self.model.complete(prompt, params)).text
            except PromptTooLongError:
                if len(prompt) <= 2:
                    raise
                prompt = [prompt[0], *prompt[3:]] if len(prompt) > 3 else [prompt[0], prompt[-1]]
                log.info("prompt_trimmed", messages=len(prompt))

    async def _budget(self, max_new_tokens: int) -> int:
        limits = await self.model.limits()
        return min(limits.max_input_tokens, limits.max_total_tokens - max_new_tokens)

    async def _stream(
        self, prompt: list[ChatMessage], params: GenerationParams, drafts: DraftPreview, context: ReplyContext
    ) -> str:
        """Generate with the model's stream, showing the text as drafts; the final text is what counts.

        A stream that fails (or breaks off) is retried the usual way, without drafts: no half reply
        is ever kept. The final message waits for a draft still in flight, so it lands last."""
        chat_id = context.conversation.chat_id
        draft_id = context.pending[-1].id % 2**31 or 1  # the newest message answered names the draft
        parts: list[str] = []
        try:
            async for piece in self.model.stream(prompt, params):
                parts.append(piece)
                drafts.show(chat_id, draft_id, "".join(parts).strip())
            text = "".join(parts).strip()
        except (ModelUnavailableError, GenerationFailedError, PromptTooLongError) as exc:
            log.warning("reply_stream_failed", error=str(exc), chars_so_far=sum(map(len, parts)))
            text = await self.complete(prompt, params)
        finally:
            await drafts.finish(chat_id)
        return text


@dataclass(slots=True)
class _Built:
    """The prompt of one reply, kept when the model then fails (the fallback reports it too)."""

    prompt: list[ChatMessage] = field(default_factory=list)
    note: str | None = None


def _turns(context: ReplyContext) -> list[Turn]:
    """The history, then what is owed a reply.

    Messages that arrived while the previous reply was written have older ids than that reply;
    they are what this reply answers, so they go last. A message stored after `pending` was read
    (the history is read by a later statement) is unanswered but not owed in this round: it
    belongs to the next one, not to this prompt."""
    owed = {m.id for m in context.pending}
    history = [
        Turn(m.role, with_note(m.text, m.recall_note), m.id)
        for m in context.recent
        if m.kind in PROMPT_KINDS and m.id not in owed and not (m.role == "user" and m.answered_at is None)
    ]
    # In the order they were sent: a voice note's transcript is stored once it is heard, after a
    # text sent behind it (Telegram's message ids grow in sending order within a chat).
    in_order = sorted(context.pending, key=lambda m: (m.telegram_message_id is None, m.telegram_message_id or 0, m.id))
    return history + [Turn(m.role, m.text, m.id) for m in in_order]
