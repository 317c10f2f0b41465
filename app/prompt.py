"""Rendering prompts: pure functions from stored values to chat messages."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from llm.types import ChatMessage, Role, estimate_prompt_tokens, estimate_tokens

# Older lines found by recall get at most this share of the prompt budget, and only what the
# recent turns leave free: recent turns keep priority, and the prompt stays the same size.
RECALL_SHARE = 0.1
RECALL_LINES = 3  # every line is new to the model server on each reply: a few good ones, not many
RECALL_LINE_CHARS = 400
# A recalled line whose words are mostly in the notebook already adds nothing the prompt lacks.
KNOWN_SHARE = 0.6
_STAGE_NOTE = re.compile(r'<stage name="(\w+)">')
_WORD = re.compile(r"\w{4,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str
    message_id: int = 0  # 0: not a stored message (an instruction)


@dataclass(frozen=True, slots=True)
class Recalled:
    """An older line of the user's that matches what they write now, best match first."""

    message_id: int
    text: str
    day: date


@dataclass(frozen=True, slots=True)
class Memory:
    rolling: str | None = None
    days: tuple[tuple[date, str], ...] = ()

    def render(self, heading: str) -> str:
        parts = [f"On {day:%A %d %B}: {text}" for day, text in self.days]
        if self.rolling:
            parts.append(self.rolling)
        return f"{heading}\n" + "\n".join(parts) if parts else ""


@dataclass(frozen=True, slots=True)
class StageShift:
    """The stage a reply is written in, and the stage the system message was written for.

    The system message keeps the stage of the chat's last fold (or /clear): a stage change in
    between goes into the prompt as a note with the message that brought it, stored with that
    message like a recall note, so every later prompt repeats it in place and starts with the
    whole of the previous prompt (what the model server's prefix cache reuses). The note holds
    the sentences of the new stage's prompt that the stage in view lacks: what changed."""

    name: str
    opening: str
    prompts: Mapping[str, str]  # each stage's system prompt

    def note(self, shown: Sequence[Turn]) -> str | None:
        """The note for the newest message, if the stage in view is not the reply's."""
        in_view = self.opening
        for turn in shown:
            for match in _STAGE_NOTE.finditer(turn.text):
                in_view = match.group(1)
        if in_view == self.name:
            return None
        said = set(_SENTENCE_END.split(self.prompts[in_view]))
        new = [sentence for sentence in _SENTENCE_END.split(self.prompts[self.name]) if sentence not in said]
        return f'<stage name="{self.name}">\n{" ".join(new) or self.prompts[self.name]}\n</stage>'


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
    return build_prompt_with_recall(system, turns, budget_tokens=budget_tokens, max_turn_chars=max_turn_chars)[0]


def with_note(text: str, note: str | None) -> str:
    """A user turn as its prompt showed it: the recall note that came with it, then its text."""
    return f"{note}\n\n{text}" if note else text


def build_prompt_with_recall(
    system: ChatMessage,
    turns: Sequence[Turn],
    *,
    budget_tokens: int,
    max_turn_chars: int = 4000,
    recalled: Sequence[Recalled] = (),
    recall_heading: str = "",
    known: str = "",
    stage: StageShift | None = None,
) -> tuple[list[ChatMessage], str | None]:
    """The system message and as many of the newest turns as fit `budget_tokens` (estimated);
    then, in what is left (at most RECALL_SHARE of the budget), the recalled lines that neither
    the chosen turns nor the notebook (`known`) already show, as a note before the last user
    message, after the stage's note when the stage changed (`stage`). Returns the prompt and the
    note (None without one), which is stored with that message.

    The note goes at the end, not in the system message, and later prompts show it with its
    message again (`with_note`), so consecutive prompts of a chat share their whole start: the
    model server's prefix cache computes only what is new."""
    room = budget_tokens - estimate_prompt_tokens([system])
    chosen: list[Turn] = []
    for turn in reversed(turns):
        clipped = Turn(turn.role, clip(turn.text, max_turn_chars), turn.message_id)
        cost = estimate_tokens(clipped.text) + 12
        if cost > room and chosen:
            break
        if cost > room:  # even the newest turn alone is too long: keep its end
            clipped = Turn(turn.role, clip(clipped.text, max(200, room * 3)), turn.message_id)
        chosen.append(clipped)
        room -= cost
    chosen.reverse()
    messages = [system, *_alternating(chosen)]
    if messages[-1].role != "user":
        return messages, None
    parts = [stage.note(chosen)] if stage is not None else []
    room -= sum(estimate_tokens(part) + 4 for part in parts if part)
    lines = _recall_lines(recalled, chosen, known, min(room, int(budget_tokens * RECALL_SHARE)))
    if lines:
        parts.append(
            "\n".join(
                ["<recalled>", recall_heading, *(f'- On {r.day:%d %B %Y}: "{r.text}"' for r in lines), "</recalled>"]
            )
        )
    note = "\n\n".join(part for part in parts if part) or None
    if note is not None:
        messages[-1] = ChatMessage("user", with_note(messages[-1].content, note))
    return messages, note


def _recall_lines(recalled: Sequence[Recalled], shown: Sequence[Turn], known: str, room: int) -> list[Recalled]:
    """The best recalled lines that fit `room` tokens and are neither among the turns shown nor
    mostly in the notebook (`known`), oldest first."""
    in_view = min((t.message_id for t in shown if t.message_id), default=None)
    known_words = {word.lower() for word in _WORD.findall(known)}
    lines: list[Recalled] = []
    room -= 24  # the heading
    for line in recalled:
        if (in_view is not None and line.message_id >= in_view) or any(line.text in t.text for t in shown):
            continue
        words = {word.lower() for word in _WORD.findall(line.text)}
        if words and len(words & known_words) >= KNOWN_SHARE * len(words):
            continue
        line = Recalled(line.message_id, clip(line.text, RECALL_LINE_CHARS), line.day)
        cost = estimate_tokens(line.text) + 8
        if cost > room:
            continue
        lines.append(line)
        room -= cost
        if len(lines) == RECALL_LINES:
            break
    return sorted(lines, key=lambda r: r.message_id)


def clip(text: str, limit: int) -> str:
    """Keep the start and the end of an over-long text."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} […] {text[-half:]}"


def transcript(turns: Sequence[Turn], *, user: str = "User", friend: str = "Friend") -> str:
    return "\n".join(f"{friend if t.role == 'assistant' else user}: {t.text}" for t in turns)
