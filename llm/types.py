"""The interface the rest of aifriend sees; backends implement `ChatModel`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationParams:
    temperature: float = 0.8
    top_p: float = 0.9
    max_new_tokens: int = 256
    repetition_penalty: float = 1.1
    adapter_id: str | None = None


@dataclass(frozen=True, slots=True)
class TokenLimits:
    max_input_tokens: int
    max_total_tokens: int


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    max_new_tokens: int


class ChatModel(Protocol):
    """A chat model with token limits; every backend maps its failures to `llm.errors`."""

    async def limits(self) -> TokenLimits: ...

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int: ...

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion: ...

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> AsyncIterator[str]: ...

    async def health(self) -> tuple[bool, str]:
        """Whether the model can answer now, and a short word on it (for `/readyz`)."""
        ...

    async def close(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning guess (about 3 bytes a token) for when no tokenizer answers."""
    return len(text.encode("utf-8")) // 3 + 1


def byte_ceiling(messages: Sequence[ChatMessage]) -> int:
    """An upper bound on a prompt's tokens: byte-level tokenizers never make more tokens than
    bytes; the constants cover the chat template's markers around each message."""
    return sum(len(message.content.encode("utf-8")) + 16 for message in messages) + 16


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Per message: its text plus the chat template's markers around it."""
    return sum(estimate_tokens(message.content) + 12 for message in messages) + 8
