"""Text-generation-inference over its OpenAI-compatible chat route, via huggingface_hub."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx2
import structlog
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    ValidationError,
)

from llm.budget import room_for_reply
from llm.errors import GenerationFailedError, LLMError, ModelUnavailableError, PromptTooLongError
from llm.gate import deadline_after_release
from llm.transport import AiohttpTransport, use_aiohttp_transport
from llm.types import (
    ChatMessage,
    Completion,
    GenerationParams,
    TokenLimits,
    byte_ceiling,
    estimate_prompt_tokens,
)

log = structlog.get_logger()
T = TypeVar("T")

_RETRY_STATUSES = {429, 500, 502, 503, 504}
HEALTH_TIMEOUT = 3.0
INFO_TTL = 300.0  # `/info` is read again this often, and at once after the server was unreachable
_TOKENIZE_OVERHEAD = 8  # template markers per message when only /tokenize is offered


class _Retryable(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _classify(exc: BaseException) -> BaseException:
    """Map a client failure to a domain error, or mark it worth another try."""
    if isinstance(exc, ValidationError):
        return PromptTooLongError(0, 0) if "token" in str(exc) else GenerationFailedError(str(exc))
    if isinstance(exc, OverloadedError):
        return _Retryable(exc)
    if isinstance(exc, GenerationError | IncompleteGenerationError | TextGenerationError):
        return GenerationFailedError(str(exc))
    response = getattr(exc, "response", None)
    if isinstance(exc, HfHubHTTPError | httpx2.HTTPStatusError) and response is not None:
        status = response.status_code
        if status in _RETRY_STATUSES:
            return _Retryable(exc)
        if status == 422:
            return PromptTooLongError(0, 0)
        if status in (401, 403):
            return ModelUnavailableError(
                f"the model server refused our credentials ({status}): set TGI_API_KEY to the key TGI was "
                "started with (--api-key)"
            )
        return GenerationFailedError(f"TGI answered {status}: {exc}")
    if isinstance(exc, httpx2.TransportError | InferenceTimeoutError | OSError | TimeoutError):
        return _Retryable(exc)
    return exc


_stream_responses: ContextVar[contextlib.AsyncExitStack | None] = ContextVar("tgi_stream_responses", default=None)


class _PerStreamExitStack(contextlib.AsyncExitStack):
    """huggingface_hub's client enters every streamed response into its own exit stack, which it
    unwinds only when the client is closed: one response kept per streamed reply for the life of
    the process (bench_memory: 1.6 GB after 100,000 chats). Entered here, a stream's response goes
    to the stack of the `stream()` call it belongs to, closed when that call ends; the client's
    HTTP session, entered once, stays on the client's own."""

    async def enter_async_context(self, cm: Any) -> Any:
        scoped = _stream_responses.get()
        if scoped is not None and not isinstance(cm, httpx2.AsyncClient):
            return await scoped.enter_async_context(cm)
        return await super().enter_async_context(cm)


async def _scoped(responses: contextlib.AsyncExitStack, call: Awaitable[T]) -> T:
    token = _stream_responses.set(responses)
    try:
        return await call
    finally:
        _stream_responses.reset(token)


class TGIChatModel:
    """`ChatModel` for a TGI (or vLLM/SGLang) server at `base_url`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        backoff: float = 0.5,
        api_key: str | None = None,
    ) -> None:
        """`timeout` bounds a whole call, retries included: a user waits at most that for the fallback."""
        self._base_url = base_url.rstrip("/")
        self._deadline = timeout
        # Without a key, huggingface_hub would send the machine's Hugging Face token (HF_TOKEN, or the
        # file `hf auth login` writes) to this server instead: a None header is left out of the request.
        keyless: dict[str, Any] = {} if api_key else {"authorization": None}
        use_aiohttp_transport()
        self._client = AsyncInferenceClient(base_url=self._base_url, timeout=timeout, api_key=api_key, headers=keyless)
        self._client.exit_stack = _PerStreamExitStack()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx2.AsyncClient(
            base_url=self._base_url, timeout=timeout, headers=headers, transport=AiohttpTransport()
        )
        self._attempts = attempts
        self._backoff = backoff
        self._limits: TokenLimits | None = None
        self._limits_read_at = 0.0
        self._tokenize_route: str | None = "/chat_tokenize"

    async def limits(self) -> TokenLimits:
        """From `/info`: the prompt is budgeted to these numbers. A TGI restarted with other
        limits is noticed: they are read again after the server was unreachable or refused a
        prompt as too long, and every INFO_TTL seconds anyway."""
        if self._limits is None or time.monotonic() - self._limits_read_at > INFO_TTL:
            info = await self._with_retries(self._get_info)
            self._limits = TokenLimits(int(info["max_input_tokens"]), int(info["max_total_tokens"]))
            self._limits_read_at = time.monotonic()
            log.info(
                "tgi_limits",
                max_input_tokens=self._limits.max_input_tokens,
                max_total_tokens=self._limits.max_total_tokens,
                model_id=info.get("model_id"),
            )
        return self._limits

    async def health(self) -> tuple[bool, str]:
        """TGI's `/health`: 200 once the model is loaded and a forward pass works."""
        try:
            response = await self._http.get("/health", timeout=HEALTH_TIMEOUT)
        except httpx2.HTTPError as exc:
            return False, f"{self._base_url} unreachable: {exc.__class__.__name__}"
        if response.status_code != 200:
            return False, f"{self._base_url}/health answered {response.status_code}"
        return True, f"{self._base_url} healthy"

    async def _get_info(self) -> dict[str, Any]:
        response = await self._http.get("/info")
        response.raise_for_status()
        return dict(response.json())

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Exact where the server tokenizes (`/chat_tokenize`, then `/tokenize`), else an estimate."""
        payload = [{"role": m.role, "content": m.content} for m in messages]
        while self._tokenize_route is not None:
            route = self._tokenize_route
            body: dict[str, Any] = (
                {"messages": payload}
                if route == "/chat_tokenize"
                else {"inputs": "\n".join(m.content for m in messages)}
            )
            try:
                response = await self._http.post(route, json=body)
            except httpx2.TransportError:
                break
            if response.status_code in (404, 405, 501):
                self._tokenize_route = "/tokenize" if route == "/chat_tokenize" else None
                log.info("tgi_tokenize_unavailable", route=route)
                continue
            if response.status_code != 200:
                break
            data = response.json()
            if route == "/chat_tokenize":
                return len(data["tokenize_response"])
            return len(data) + _TOKENIZE_OVERHEAD * len(messages)
        return estimate_prompt_tokens(messages)

    async def _prepare(self, messages: Sequence[ChatMessage], params: GenerationParams) -> tuple[int, int]:
        limits = await self.limits()
        ceiling = byte_ceiling(messages)
        if ceiling + params.max_new_tokens <= limits.max_total_tokens and ceiling <= limits.max_input_tokens:
            # Provably small enough: no tokenizer makes more tokens than bytes. Skip the round trip.
            return ceiling, params.max_new_tokens
        prompt_tokens = await self.count_tokens(messages)
        return prompt_tokens, room_for_reply(prompt_tokens, params.max_new_tokens, limits)

    def _request(self, messages: Sequence[ChatMessage], params: GenerationParams, max_new: int) -> dict[str, Any]:
        return {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_new,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # The chat route has no repetition_penalty; its frequency_penalty is the nearest knob.
            "frequency_penalty": round(max(0.0, params.repetition_penalty - 1.0), 3),
            # TGI picks a LoRA adapter by the chat request's `model` field.
            "model": params.adapter_id,
        }

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        try:
            async with asyncio.timeout(self._deadline) as limit:
                with deadline_after_release(limit, self._deadline):
                    prompt_tokens, max_new = await self._prepare(messages, params)
                    request = self._request(messages, params, max_new)

                    async def call() -> str:
                        output = await self._client.chat_completion(**request)
                        return output.choices[0].message.content or ""

                    text = await self._with_retries(call)
        except TimeoutError:
            raise ModelUnavailableError(
                f"the model server at {self._base_url} gave no answer within {self._deadline:g} s"
            ) from None
        return Completion(text=text.strip(), prompt_tokens=prompt_tokens, max_new_tokens=max_new)

    async def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> AsyncIterator[str]:
        """The reply as the server writes it; the same deadline as `complete` bounds the whole stream."""
        try:
            # The responses of this stream's attempts are closed when it ends, however it ends.
            async with contextlib.AsyncExitStack() as responses:
                # Until the stream is open nothing is yielded, so one timeout can bound that part;
                # the pieces after it get what is left of the same deadline.
                async with asyncio.timeout(self._deadline) as opening:
                    with deadline_after_release(opening, self._deadline):
                        _, max_new = await self._prepare(messages, params)
                        request = self._request(messages, params, max_new)
                        chunks = await self._with_retries(
                            lambda: _scoped(responses, self._client.chat_completion(stream=True, **request))
                        )
                deadline = opening.when() or 0.0
                loop = asyncio.get_running_loop()
                iterator = chunks.__aiter__()
                while True:
                    try:
                        chunk = await asyncio.wait_for(iterator.__anext__(), max(0.05, deadline - loop.time()))
                    except StopAsyncIteration:
                        return
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except TimeoutError:
            raise ModelUnavailableError(
                f"the model server at {self._base_url} gave no answer within {self._deadline:g} s"
            ) from None
        except LLMError:
            raise
        except Exception as exc:
            raise GenerationFailedError(f"the stream broke off: {exc}") from exc

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self._attempts + 1):
            try:
                return await call()
            except Exception as exc:
                mapped = _classify(exc)
                if isinstance(mapped, _Retryable | PromptTooLongError):
                    self._limits = None  # a restarted server may come back with other limits
                if not isinstance(mapped, _Retryable):
                    if mapped is exc:
                        raise
                    raise mapped from exc
                if attempt == self._attempts:
                    raise ModelUnavailableError(
                        f"the model server at {self._base_url} failed {attempt} times: {exc.__class__.__name__}: {exc}"
                    ) from exc
                delay = self._backoff * 2 ** (attempt - 1)
                log.warning("tgi_retry", attempt=attempt, delay=delay, error=exc.__class__.__name__)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._http.aclose()
        await self._client.close()  # type: ignore[no-untyped-call]
