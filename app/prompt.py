"""Rendering prompts: pure functions from stored values to chat messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from llm.types import ChatMessage, Role, estimate_prompt_tokens, estimate_tokens


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True, slots=True)
class Memory:
    rolling: str | None = None
    days: tuple[tuple[date, str], ...] = ()

    def render(self, heading: str) -> str:
        parts = [f"On {day:%A %d %B}: {text}" for day, text in self.days]
        if self.rolling:
            parts.append(self.rolling)
        return f"{heading}\n" + "\n".join(parts) if parts else ""


def system_message(system: str, memory: Memory, heading: str) -> ChatMessage:
    remembered = memory.render(heading)
    return ChatMessage("system", f"{system}\n\n{remembered}" if remembered else system)


def _alternating(turns: Sequence[Turn]) -> list[ChatMessage]:
    """Chat templates want user/assistant alternation starting with the user: merge runs."""
    merged: list[ChatMessage] = []
    for turn in turns:
        role: Role = "assistant" if turn.role == "assistant" else "user"
        if merged and merged[-1].role == role:
            merged[-1] = ChatMessage(role, f"{merged[-1].content}\n{turn.text}")
        else:
            merged.append(ChatMessage(role, turn.text))
    while merged and merged[0].role != "user":
        merged.pop(0)
    return merged


def build_prompt(
    system: ChatMessage, turns: Sequence[Turn], *, budget_tokens: int, max_turn_chars: int = 4000
) -> list[ChatMessage]:
    """The system message and as many of the newest turns as fit `budget_tokens` (estimated)."""
    room = budget_tokens - estimate_prompt_tokens([system])
    chosen: list[Turn] = []
    for turn in reversed(turns):
        clipped = Turn(turn.role, clip(turn.text, max_turn_chars))
        cost = estimate_tokens(clipped.text) + 12
        if cost > room and chosen:
            break
        if cost > room:  # even the newest turn alone is too long: keep its end
            clipped = Turn(turn.role, clip(clipped.text, max(200, room * 3)))
        chosen.append(clipped)
        room -= cost
    return [system, *_alternating(chosen[::-1])]


def clip(text: str, limit: int) -> str:
    """Keep the start and the end of an over-long text."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} […] {text[-half:]}"


def transcript(turns: Sequence[Turn], *, user: str = "User", friend: str = "Friend") -> str:
    return "\n".join(f"{friend if t.role == 'assistant' else user}: {t.text}" for t in turns)
