"""Where the model servers that speak the OpenAI chat route differ (`MODEL_SERVER`).

All four answer `POST /v1/chat/completions` (streamed or not) and `GET /health`; they differ in
where the token limits come from, how tokens are counted, how a LoRA adapter is chosen and how
"prompt too long" is said. Each server's documented API:

- token limits: TGI `GET /info`; vLLM and SGLang `GET /v1/models` (`max_model_len`); llama.cpp
  `GET /props` (`default_generation_settings.n_ctx`).
- tokens counted: TGI `POST /chat_tokenize` (then `/tokenize`); vLLM `POST /tokenize` with the
  messages; llama.cpp `POST /tokenize` with the text; SGLang estimated.
- a stage's LoRA adapter: TGI `model: <adapter_id>`; vLLM `model: <adapter>` (from
  `--lora-modules`); SGLang `model: <base>:<adapter>`; llama.cpp cannot choose one per request,
  which is an error at start-up.
- prompt too long: TGI 422 "...tokens..."; vLLM and SGLang 400 "...context length..."; llama.cpp
  400 `exceed_context_size_error`. Overloaded (429, 503) and 5xx are retried everywhere.

`auto` asks the server: TGI answers `/info`, llama.cpp `/props`, vLLM and SGLang name themselves in
`/v1/models` (`owned_by`). Behind a router (which answers `/v1/models` itself and passes no
`/info`) the server is taken for TGI, and the limits are MODEL_MAX_TOKENS, or FALLBACK_LIMITS with
a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llm.types import TokenLimits

# A server that tells no limits (TGI behind a gateway that does not pass /info) is budgeted for
# these; a prompt it still finds too long is trimmed and sent again.
FALLBACK_LIMITS = TokenLimits(max_input_tokens=3072, max_total_tokens=4096)
_TOO_LONG = re.compile(r"token|context (length|size)|exceed_context", re.IGNORECASE)


class AdapterUnsupportedError(Exception):
    """The persona names a LoRA adapter the configured server cannot choose per request."""


@dataclass(frozen=True, slots=True)
class Served:
    """What the server told about itself."""

    kind: str
    limits: TokenLimits | None  # None: it does not say (TGI behind a gateway)
    model: str  # the served model's name, for the request's `model` field


def detect(info: dict[str, Any] | None, props: dict[str, Any] | None, models: dict[str, Any] | None) -> str:
    """The server's kind from its answers to `/info`, `/props` and `/v1/models` (None: not offered)."""
    if info is not None and "max_total_tokens" in info:
        return "tgi"
    if props is not None and "default_generation_settings" in props:
        return "llamacpp"
    owner = str(_first_model(models).get("owned_by", "")).lower()
    if owner in ("vllm", "sglang"):
        return owner
    return "tgi"


def served(
    kind: str, info: dict[str, Any] | None, props: dict[str, Any] | None, models: dict[str, Any] | None
) -> Served:
    """The limits and the model name, from what the server's kind reports them in."""
    card = _first_model(models)
    name = str(card.get("id") or "")
    limits: TokenLimits | None = None
    if kind == "tgi" and info is not None and "max_total_tokens" in info:
        limits = TokenLimits(int(info["max_input_tokens"]), int(info["max_total_tokens"]))
        name = name or str(info.get("model_id") or "tgi")
    elif kind == "llamacpp" and props is not None:
        context = int(props.get("default_generation_settings", {}).get("n_ctx") or 0)
        limits = TokenLimits(context - 1, context) if context > 1 else None
    elif card.get("max_model_len"):  # vLLM and SGLang; TGI behind a gateway never says
        length = int(card["max_model_len"])
        limits = TokenLimits(length - 1, length)
    return Served(kind, limits, name or kind)


def limit_routes(kind: str) -> tuple[str, ...]:
    """The routes to read, in order, for the server's limits and model name."""
    return {"tgi": ("/info", "/v1/models"), "llamacpp": ("/props", "/v1/models")}.get(kind, ("/v1/models",))


def model_field(kind: str, served_model: str, adapter_id: str | None) -> dict[str, Any]:
    """The request fields that choose the model, and the stage's LoRA adapter where there is one."""
    if kind == "tgi":
        return {"model": adapter_id or "tgi"}  # TGI picks the adapter by `model`
    if kind == "vllm":
        return {"model": adapter_id or served_model}  # an adapter registered with --lora-modules
    if kind == "sglang":
        return {"model": f"{served_model}:{adapter_id}" if adapter_id else served_model}
    if adapter_id:
        raise AdapterUnsupportedError(
            f"the persona asks for the LoRA adapter {adapter_id!r}, but llama.cpp's server cannot choose an adapter "
            "per request: remove adapter_id from the persona, or serve the model with TGI, vLLM or SGLang"
        )
    return {"model": served_model}


def tokenize_request(kind: str, served_model: str, messages: list[dict[str, str]]) -> tuple[str, dict[str, Any]] | None:
    """The server's tokenize route and body for a chat prompt; None where it has none we use."""
    if kind == "vllm":
        return "/tokenize", {"model": served_model, "messages": messages}
    if kind == "llamacpp":
        return "/tokenize", {"content": "\n".join(m["content"] for m in messages)}
    return None


def counted(kind: str, answer: Any, messages: int, overhead: int) -> int:
    """The token count in a tokenize answer (llama.cpp's is of the text: template markers added)."""
    if kind == "vllm":
        return int(answer["count"])
    return len(answer["tokens"]) + overhead * messages


def is_prompt_too_long(status: int, said: str) -> bool:
    """How each server says it: TGI 422 "...tokens...", vLLM and SGLang 400 "...context length...",
    llama.cpp 400 `exceed_context_size_error`."""
    return status in (400, 413, 422) and bool(_TOO_LONG.search(said))


def _first_model(models: dict[str, Any] | None) -> dict[str, Any]:
    data = (models or {}).get("data") or []
    return dict(data[0]) if data and isinstance(data[0], dict) else {}
