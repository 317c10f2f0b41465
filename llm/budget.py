"""How many new tokens a prompt leaves room for, under TGI's validation rules."""

from __future__ import annotations

from llm.errors import PromptTooLongError
from llm.types import TokenLimits

# Below this many new tokens a reply is not worth asking for.
MIN_NEW_TOKENS = 16


def room_for_reply(prompt_tokens: int, wanted: int, limits: TokenLimits) -> int:
    """TGI rejects `input > max_input` or `input + max_new > max_total`; never ask for either."""
    if prompt_tokens > limits.max_input_tokens:
        raise PromptTooLongError(prompt_tokens, limits.max_input_tokens)
    room = limits.max_total_tokens - prompt_tokens
    if room < min(MIN_NEW_TOKENS, wanted):
        raise PromptTooLongError(prompt_tokens, limits.max_total_tokens - MIN_NEW_TOKENS)
    return min(wanted, room)
