"""In-process `transformers` backend, for machines without a TGI server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog

from llm.budget import room_for_reply
from llm.errors import GenerationFailedError, ModelUnavailableError
from llm.types import ChatMessage, Completion, GenerationParams, TokenLimits

log = structlog.get_logger(__name__)

_FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class TransformersChatModel:
    """A causal LM loaded from `model` (hub id or local folder), run off the event loop."""

    def __init__(self, tokenizer: Any, model: Any) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self._lock = threading.Lock()  # one generate() at a time: the model is not re-entrant
        config = model.config
        window = next(
            (
                getattr(config, name)
                for name in ("max_position_embeddings", "n_positions", "n_ctx")
                if isinstance(getattr(config, name, None), int)
            ),
            2048,
        )
        self._limits = TokenLimits(max_input_tokens=window - 1, max_total_tokens=window)

    @classmethod
    async def load(cls, model: str) -> TransformersChatModel:
        def _load() -> TransformersChatModel:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(model)
                lm = AutoModelForCausalLM.from_pretrained(model)
            except (OSError, ValueError) as exc:
                raise ModelUnavailableError(
                    f"could not load LLM_MODEL={model!r} ({exc}); point it at a local model folder"
                ) from exc
            if getattr(tokenizer, "chat_template", None) is None:
                tokenizer.chat_template = _FALLBACK_TEMPLATE
            lm.eval()  # type: ignore[no-untyped-call]
            return cls(tokenizer, lm)

        loaded = await asyncio.to_thread(_load)
        log.info("local_model_loaded", model=model, max_total_tokens=loaded._limits.max_total_tokens)
        return loaded

    async def limits(self) -> TokenLimits:
        return self._limits

    def _encode(self, messages: Sequence[ChatMessage]) -> list[int]:
        encoded = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            tokenize=True,
        )
        ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
        return list(ids)

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._encode(messages))

    def _generate(self, ids: list[int], params: GenerationParams, max_new: int, streamer: Any = None) -> str:
        import torch

        with self._lock, torch.inference_mode():
            inputs = torch.tensor([ids])
            sampling = (
                {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
                if params.temperature > 0
                else {"do_sample": False}
            )
            output = self._model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new,
                repetition_penalty=params.repetition_penalty,
                **sampling,
                pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                streamer=streamer,
            )
        return str(self._tokenizer.decode(output[0][len(ids) :], skip_special_tokens=True))

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        ids = self._encode(messages)
        max_new = room_for_reply(len(ids), params.max_new_tokens, self._limits)
        try:
            text = await asyncio.to_thread(self._generate, ids, params, max_new)
        except RuntimeError as exc:
            raise GenerationFailedError(f"local generation failed: {exc}") from exc
        return Completion(text=text.strip(), prompt_tokens=len(ids), max_new_tokens=max_new)

    async def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> AsyncIterator[str]:
        from transformers import TextIteratorStreamer

        ids = self._encode(messages)
        max_new = room_for_reply(len(ids), params.max_new_tokens, self._limits)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        task = asyncio.create_task(asyncio.to_thread(self._generate, ids, params, max_new, streamer))
        sentinel = object()
        try:
            while True:
                piece = await asyncio.to_thread(next, streamer, sentinel)
                if piece is sentinel:
                    break
                if piece:
                    yield str(piece)
            await task
        except RuntimeError as exc:
            raise GenerationFailedError(f"local generation failed: {exc}") from exc

    async def health(self) -> tuple[bool, str]:
        return True, "in process"

    async def close(self) -> None:
        return None
