"""The few failures the conversation service acts on, whatever the backend."""

from __future__ import annotations


class LLMError(Exception):
    """Base of model failures."""


class ModelUnavailableError(LLMError):
    """Unreachable, overloaded or failing after every retry: answer with the fallback line."""


class PromptTooLongError(LLMError):
    """The prompt does not fit the model's limits: drop older turns and try again."""

    def __init__(self, prompt_tokens: int, limit: int) -> None:
        super().__init__(f"prompt of {prompt_tokens} tokens does not fit the limit of {limit}")
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class GenerationFailedError(LLMError):
    """The server accepted the request but generation failed (424, or an error mid-stream)."""
