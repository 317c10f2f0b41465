"""The emulated model: an honest echo, and the simple tokenizer and chat template it is measured by.

Every answer starts with MARKER and repeats the start of the last user message (without a
``<recalled>`` or ``<stage>`` block: context marked as such is not what the user said), cut to the tokens asked
for. A token is a word or a punctuation mark.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "[emulated model]"
_CONTEXT_BLOCK = re.compile(r"<recalled>.*?</recalled>|<stage name=\"\w+\">.*?</stage>", re.DOTALL)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def token_count(text: str) -> int:
    """len(tokenize(text)), without building every token's span (a chat request counts its whole prompt)."""
    return len(_TOKEN.findall(text))


def template(messages: list[dict[str, Any]]) -> str:
    parts = [f"<|{m.get('role', 'user')}|>\n{content_of(m)}<|end|>\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"


def content_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # OpenAI content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def echo(prompt_messages: list[dict[str, Any]], max_new: int) -> str:
    """The answer to a prompt: the marker and the last user message, at most `max_new` tokens."""
    last_user = next((content_of(m) for m in reversed(prompt_messages) if m.get("role") == "user"), "")
    # Notes the prompt marks as such are not what the user said: a model does not parrot it.
    last_user = _CONTEXT_BLOCK.sub(" ", last_user)
    body = " ".join(last_user.replace(MARKER, " ").split())
    words = tokenize(f"{MARKER} {body}")
    if len(words) <= max_new:
        return f"{MARKER} {body}".strip()
    cut = words[max_new - 1][2]
    return f"{MARKER} {body}"[:cut]


def pieces_of(text: str) -> list[str]:
    """Each token with the text before it: what a stream sends, adding up to exactly `text`."""
    pieces, start = [], 0
    for _, _, end in tokenize(text):
        pieces.append(text[start:end])
        start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces
