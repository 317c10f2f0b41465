"""Writing a reply: the prompt from what was read, one model call, the persona's fallback line
when the model cannot answer. Storing and sending it is the conversation service's.

A reply can be written ahead (`write_ahead`): its prompt built and the model client's request
made ready while the message it answers is still being stored, so that the request leaves the
moment the store commits. Nothing of it leaves the process before then (`llm.gate`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog

from app.metrics import Metrics
from app.persona import Persona
from app.prompt import Turn, build_prompt_with_recall, system_message, with_note
from app.services.drafts import DraftPreview
from app.services.records import ReplyContext
from app.services.text import storable
from fsm import Stage
from llm.errors import GenerationFailedError, ModelUnavailableError, PromptTooLongError
from llm.gate import held_until
from llm.sentiment import detect_crisis
from llm.types import ChatMessage, ChatModel

log = structlog.get_logger()

PROMPT_KINDS = frozenset({"text", "reply", "checkin", "greeting", "fallback"})


@dataclass(frozen=True, slots=True)
class Written:
    """A reply's text and how it came to be, before it is stored."""

    text: str
    kind: str  # "reply", or "fallback" when the model could not answer
    stage: Stage
    crisis: bool
    prompt: tuple[ChatMessage, ...]
    note: str | None  # the recall note the prompt carried, kept with the message it answered


class ReplyWriter:
    def __init__(self, *, model: ChatModel, persona: Persona, metrics: Metrics) -> None:
        self.model = model
        self.persona = persona
        self.metrics = metrics

    def write_ahead(
        self, context: ReplyContext, drafts: DraftPreview | None, answering: asyncio.Future[int]
    ) -> asyncio.Task[Written]:
        """Start writing the reply to a message still being stored; its requests to the model wait
        until `answering` holds the message's id. Cancel the task if the message was not stored."""

        async def held() -> Written:
            with held_until(answering):
                return await self.write(context, drafts, answering)

        task = asyncio.create_task(held())
        task.add_done_callback(_retrieved)
        return task

    async def write(
        self, context: ReplyContext, drafts: DraftPreview | None, answering: asyncio.Future[int] | None = None
    ) -> Written:
        """`drafts`: show the text as it is written. `answering`: the id of the message answered, when
        it is not yet stored (its drafts need it, and nothing is sent before)."""
        row = context.conversation
        stage = Stage(row.state)
        crisis = any(detect_crisis(m.text) for m in context.pending)
        style = self.persona.style(Stage.REPAIR if crisis else stage)
        system = system_message(
            self.persona.prompts.safety if crisis else style.system,
            context.memory,
            self.persona.prompts.memory_heading,
        )
        # Messages that arrived while the previous reply was written have older ids than
        # that reply; they are what this reply answers, so they go last.
        # A message stored after `pending` was read (the history is read by a later statement) is
        # unanswered but not owed in this round: it belongs to the next one, not to this prompt.
        owed = {m.id for m in context.pending}
        turns = [
            Turn(m.role, with_note(m.text, m.recall_note), m.id)
            for m in context.recent
            if m.kind in PROMPT_KINDS and m.id not in owed and not (m.role == "user" and m.answered_at is None)
        ]
        turns += [Turn(m.role, m.text, m.id) for m in context.pending]
        prompt: list[ChatMessage] = []
        note: str | None = None
        kind = "reply"
        try:
            limits = await self.model.limits()
            budget = min(limits.max_input_tokens, limits.max_total_tokens - style.max_new_tokens)
            prompt, note = build_prompt_with_recall(
                system,
                turns,
                budget_tokens=budget,
                recalled=context.recalled,
                recall_heading=self.persona.prompts.recall_heading,
            )
            asked_at = [time.monotonic()]
            if answering is not None:  # the model is asked once the message is stored, not before
                answering.add_done_callback(lambda _: asked_at.append(time.monotonic()))
            if drafts is not None and drafts.enabled:
                text = await self._stream(prompt, style.params, drafts, row.chat_id, context, answering)
            else:
                text = await self.complete(prompt, style.params)
            self.metrics.observe("aifriend_model_seconds", time.monotonic() - max(asked_at))
            self.metrics.set("aifriend_model_up", 1)
        except (ModelUnavailableError, GenerationFailedError, PromptTooLongError) as exc:
            log.warning("reply_fallback", error=str(exc), error_type=exc.__class__.__name__)
            self.metrics.set("aifriend_model_up", 0 if isinstance(exc, ModelUnavailableError) else 1)
            text, kind = self.persona.fallback, "fallback"
        text = storable(text)
        if not text:
            text, kind = self.persona.fallback, "fallback"
        return Written(text, kind, stage, crisis, tuple(prompt), note if kind == "reply" else None)

    async def _stream(
        self,
        prompt: list[ChatMessage],
        params: Any,
        drafts: DraftPreview,
        chat_id: int,
        context: ReplyContext,
        answering: asyncio.Future[int] | None,
    ) -> str:
        """Generate with the model's stream, showing the text as drafts; the final text is what counts.

        A stream that fails (or breaks off) is retried the usual way, without drafts: no half reply
        is ever kept. The final message waits for a draft still in flight, so it lands last."""
        parts: list[str] = []
        draft_id = 0
        try:
            async for piece in self.model.stream(prompt, params):
                parts.append(piece)
                if not draft_id:  # the answered message's id: stored by now, since the request left
                    message_id = await answering if answering is not None else context.pending[-1].id
                    draft_id = message_id % 2**31 or 1
                drafts.show(chat_id, draft_id, "".join(parts).strip())
            text = "".join(parts).strip()
        except (ModelUnavailableError, GenerationFailedError, PromptTooLongError) as exc:
            log.warning("reply_stream_failed", error=str(exc), chars_so_far=sum(map(len, parts)))
            text = await self.complete(prompt, params)
        finally:
            await drafts.finish(chat_id)
        return text

    async def complete(self, prompt: list[ChatMessage], params: Any) -> str:
        """One model call; if the exact count is over the limit, drop the oldest turns and retry."""
        while True:
            try:
                return (await self.model.complete(prompt, params)).text
            except PromptTooLongError:
                if len(prompt) <= 2:
                    raise
                prompt = [prompt[0], *prompt[3:]] if len(prompt) > 3 else [prompt[0], prompt[-1]]
                log.info("prompt_trimmed", messages=len(prompt))


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A reply written ahead and then called off leaves no error nobody looked at."""
    if not task.cancelled():
        task.exception()
