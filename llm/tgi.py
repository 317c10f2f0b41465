"""The model server over the OpenAI-compatible chat route, through the `openai` client: TGI (the
default), vLLM, SGLang or llama.cpp's server (`MODEL_SERVER`, or detected). Where they differ
(token limits, token counts, LoRA adapters, "prompt too long") is `llm/servers.py`. Every request
made for a chat carries its routing key (`llm/routing.py`), so a router keeps the chat on the
replica holding its prefix.

Requests go through the client's documented low-level `post`, with bodies built here: its typed
`chat.completions.create` validates and transforms every message through its type annotations,
which costs more CPU than the rest of the call (docs/performance.md).

What each failure means is decided in `_classify`, the one place that reads the client's
exceptions: overload, 5xx and connection failures are retried (`attempts`, with backoff), and
everything else maps to the `llm.errors` the services act on. `timeout` bounds a whole call,
retries included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx2
import openai
import structlog
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient, Omit
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from llm import servers
from llm.budget import room_for_reply
from llm.errors import GenerationFailedError, LLMError, ModelUnavailableError, PromptTooLongError
from llm.routing import routing_headers, secret_from
from llm.types import ChatMessage, Completion, GenerationParams, TokenLimits, byte_ceiling, estimate_prompt_tokens

log = structlog.get_logger(__name__)
T = TypeVar("T")

_RETRY_STATUSES = {429, 500, 502, 503, 504}
HEALTH_TIMEOUT = 3.0
INFO_TTL = 300.0  # `/info` is read again this often, and at once after the server was unreachable
_TOKENIZE_OVERHEAD = 8  # template markers per message when only /tokenize is offered


class _Retry(Exception):
    """A failure worth another try: nothing was generated (overloaded, 5xx, no connection)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(_describe(cause))
        self.cause = cause


def _describe(exc: BaseException) -> str:
    """The client's message and, for a connection that failed, what failed underneath (a reset, TLS)."""
    cause = exc.__cause__ or exc.__context__
    detail = f"{exc.__class__.__name__}: {exc}"
    return f"{detail} ({cause.__class__.__name__}: {cause})" if cause is not None else detail


def _said(exc: openai.APIStatusError) -> str:
    """What the server said, from TGI's `{"error": "..."}` or the OpenAI shape `{"error": {"message": ...}}`."""
    said = exc.body.get("error") if isinstance(exc.body, dict) else None
    if isinstance(said, dict):
        said = said.get("message")
    return str(said or exc.response.text or exc.message)[:500]


def _classify(exc: BaseException) -> BaseException:
    """Map a client failure to a domain error, or mark it worth another try."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in _RETRY_STATUSES:
            return _Retry(exc)
        said = _said(exc)
        if servers.is_prompt_too_long(status, said):
            return PromptTooLongError(0, 0)
        if status == 422:
            return GenerationFailedError(said)
        if status in (401, 403):
            return ModelUnavailableError(
                f"the model server refused our credentials ({status}): set TGI_API_KEY to the key TGI was "
                "started with (--api-key)"
            )
        return GenerationFailedError(f"the model server answered {status}: {said}")
    if isinstance(exc, openai.APIConnectionError):  # its timeouts included
        return _Retry(exc)
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return GenerationFailedError(exc.message)
    return exc


class TGIChatModel:
    """`ChatModel` for the model server at `base_url`: `server` names its kind (`tgi`, `vllm`,
    `sglang`, `llamacpp`) or `auto` to ask it; `routing_secret` keys the per-chat routing key."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        backoff: float = 0.5,
        api_key: str | None = None,
        server: str = "auto",
        routing_secret: bytes | None = None,
        context_tokens: int = 0,
    ) -> None:
        self._root = base_url.rstrip("/")
        self._server = server
        self._routing_secret = routing_secret or secret_from()
        self._served: servers.Served | None = None
        # MODEL_MAX_TOKENS: the context length to budget for where the server does not tell it.
        told = TokenLimits(context_tokens - 1, context_tokens) if context_tokens > 1 else None
        self._untold = told or servers.FALLBACK_LIMITS
        self._deadline = timeout
        # Nothing is taken from the environment: the client would otherwise send the machine's
        # OPENAI_API_KEY (and organization and project) to whatever TGI_URL names.
        self._client = AsyncOpenAI(
            base_url=f"{self._root}/v1",
            api_key=api_key or "unused",
            organization="",
            project="",
            admin_api_key="",
            http_client=DefaultAioHttpClient(),
            max_retries=0,
            timeout=timeout,
        )
        unset = Omit()
        self._headers: dict[str, Any] = {"OpenAI-Organization": unset, "OpenAI-Project": unset}
        if not api_key:
            self._headers["Authorization"] = unset
        self._attempts = attempts
        self._backoff = backoff
        self._limits: TokenLimits | None = None
        self._limits_read_at = 0.0
        self._tokenize_route: str | None = "/chat_tokenize"

    async def limits(self) -> TokenLimits:
        """From the server (TGI's `/info`, vLLM's and SGLang's `/v1/models`, llama.cpp's `/props`):
        the prompt is budgeted to these numbers. A server restarted with other limits is noticed:
        they are read again after it was unreachable or refused a prompt as too long, and every
        INFO_TTL seconds anyway."""
        if self._limits is None or time.monotonic() - self._limits_read_at > INFO_TTL:
            served = await self._ask_server()
            if served.limits is None:
                log.warning(
                    "model_limits_untold",
                    server=served.kind,
                    assumed_total=self._untold.max_total_tokens,
                    what_to_do="set MODEL_MAX_TOKENS to the model's context length (a router hides the server's own)",
                )
            self._served = served
            self._limits = served.limits or self._untold
            self._limits_read_at = time.monotonic()
            log.info(
                "model_server",
                server=served.kind,
                model=served.model,
                max_input_tokens=self._limits.max_input_tokens,
                max_total_tokens=self._limits.max_total_tokens,
            )
        return self._limits

    @property
    def server(self) -> str:
        """The server's kind, as configured or (once `limits` was read) detected."""
        return self._served.kind if self._served is not None else self._server

    async def _ask_server(self) -> servers.Served:
        """What the server tells about itself, from the routes its kind answers (all three for `auto`
        until the kind is known; a refresh asks only that kind's)."""
        kind = self._served.kind if self._served is not None else self._server
        routes = ("/info", "/props", "/v1/models") if kind == "auto" else servers.limit_routes(kind)
        answers: dict[str, dict[str, Any] | None] = {}
        for route in routes:
            answers[route] = await self._with_retries(functools.partial(self._offered, route))
        info, props, models = answers.get("/info"), answers.get("/props"), answers.get("/v1/models")
        if kind == "auto":
            kind = servers.detect(info, props, models)
        return servers.served(kind, info, props, models)

    async def _offered(self, route: str) -> dict[str, Any] | None:
        """The route's JSON, or None where the server (or a router in front of it) has no such route."""
        try:
            answer = await self._get(route)
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):
                return None
            raise
        try:
            body = answer.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def health(self) -> tuple[bool, str]:
        """The server's `/health` (all four kinds have it): 200 once the model is loaded and can serve."""
        try:
            await self._get("/health", wait=HEALTH_TIMEOUT)
        except openai.APIStatusError as exc:
            return False, f"{self._root}/health answered {exc.status_code}"
        except openai.APIError as exc:
            return False, f"{self._root} unreachable: {exc.__class__.__name__}"
        return True, f"{self._root} healthy"

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Exact where the server tokenizes (TGI's `/chat_tokenize`, then `/tokenize`; vLLM's and
        llama.cpp's `/tokenize`), else an estimate."""
        if self._served is None:
            await self.limits()  # which server it is decides the route
        if self.server != "tgi":
            return await self._count_elsewhere(messages)
        while (route := self._tokenize_route) is not None:
            body: dict[str, Any] = (
                {"messages": _payload(messages)}
                if route == "/chat_tokenize"
                else {"inputs": "\n".join(m.content for m in messages)}
            )
            try:
                response = await self._post(route, body)
            except openai.APIStatusError as exc:
                if exc.status_code not in (404, 405, 501):
                    break
                self._tokenize_route = "/tokenize" if route == "/chat_tokenize" else None
                log.info("tgi_tokenize_unavailable", route=route)
                continue
            except openai.APIError:
                break
            if route == "/chat_tokenize":
                return len(response.json()["tokenize_response"])
            return len(response.json()) + _TOKENIZE_OVERHEAD * len(messages)
        return estimate_prompt_tokens(messages)

    async def _count_elsewhere(self, messages: Sequence[ChatMessage]) -> int:
        model = self._served.model if self._served is not None else ""
        request = servers.tokenize_request(self.server, model, _payload(messages))
        if request is not None and self._tokenize_route is not None:
            try:
                answer = (await self._post(request[0], request[1])).json()
                return servers.counted(self.server, answer, len(messages), _TOKENIZE_OVERHEAD)
            except openai.APIStatusError as exc:
                if exc.status_code in (404, 405, 501):
                    self._tokenize_route = None
                    log.info("model_tokenize_unavailable", route=request[0])
            except (openai.APIError, KeyError, ValueError):
                pass
        return estimate_prompt_tokens(messages)

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        try:
            async with asyncio.timeout(self._deadline):
                prompt_tokens, max_new = await self._prepare(messages, params)
                body = self._body(messages, params, max_new)
                answer = await self._with_retries(lambda: self._post("/v1/chat/completions", body))
        except TimeoutError:
            raise self._silent() from None
        text = answer.json()["choices"][0]["message"]["content"] or ""
        return Completion(text=text.strip(), prompt_tokens=prompt_tokens, max_new_tokens=max_new)

    async def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> AsyncIterator[str]:
        """The reply as the server writes it; the same deadline as `complete` bounds the whole stream.
        The response is closed when the stream ends, however it ends."""
        deadline = asyncio.get_running_loop().time() + self._deadline
        try:
            async with asyncio.timeout_at(deadline):
                _, max_new = await self._prepare(messages, params)
                body = {**self._body(messages, params, max_new), "stream": True}
                chunks = await self._with_retries(lambda: self._open_stream(body))
            async with chunks, contextlib.aclosing(_generator(chunks)) as pieces:
                while True:
                    async with asyncio.timeout_at(deadline):  # never around a `yield`: the caller's time is its own
                        chunk = await anext(pieces, None)
                    if chunk is None:
                        return
                    if chunk.get("choices") and (piece := chunk["choices"][0].get("delta", {}).get("content")):
                        yield piece
        except TimeoutError:
            raise self._silent() from None
        except LLMError:
            raise
        except Exception as exc:
            raise GenerationFailedError(f"the stream broke off: {_classify(exc)}") from exc

    async def close(self) -> None:
        await self._client.close()

    # ---- requests ----

    def _request_headers(self) -> dict[str, Any]:
        """The client's fixed headers and, for a request made for a chat, its routing key."""
        return {**self._headers, **routing_headers(self._routing_secret)}

    async def _get(self, route: str, *, wait: float | None = None) -> httpx2.Response:
        url = f"{self._root}{route}"
        if wait is None:
            return await self._client.get(url, cast_to=httpx2.Response, options={"headers": self._headers})
        return await self._client.get(url, cast_to=httpx2.Response, options={"headers": self._headers, "timeout": wait})

    async def _post(self, route: str, body: dict[str, Any]) -> httpx2.Response:
        return await self._client.post(
            f"{self._root}{route}", cast_to=httpx2.Response, body=body, options={"headers": self._request_headers()}
        )

    async def _open_stream(self, body: dict[str, Any]) -> AsyncStream[dict[str, Any]]:
        return await self._client.post(
            f"{self._root}/v1/chat/completions",
            cast_to=dict[str, Any],
            body=body,
            stream=True,
            stream_cls=AsyncStream[dict[str, Any]],
            options={"headers": self._request_headers()},
        )

    async def _prepare(self, messages: Sequence[ChatMessage], params: GenerationParams) -> tuple[int, int]:
        limits = await self.limits()
        ceiling = byte_ceiling(messages)
        if ceiling + params.max_new_tokens <= limits.max_total_tokens and ceiling <= limits.max_input_tokens:
            # Provably small enough: no tokenizer makes more tokens than bytes. Skip the round trip.
            return ceiling, params.max_new_tokens
        prompt_tokens = await self.count_tokens(messages)
        return prompt_tokens, room_for_reply(prompt_tokens, params.max_new_tokens, limits)

    def _body(self, messages: Sequence[ChatMessage], params: GenerationParams, max_new: int) -> dict[str, Any]:
        model = self._served.model if self._served is not None else self._server
        try:
            chosen = servers.model_field(self.server, model, params.adapter_id)
        except servers.AdapterUnsupportedError as exc:
            raise GenerationFailedError(str(exc)) from None
        return {
            **chosen,
            "messages": _payload(messages),
            "max_tokens": max_new,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # The chat route has no repetition_penalty; its frequency_penalty is the nearest knob.
            "frequency_penalty": round(max(0.0, params.repetition_penalty - 1.0), 3),
        }

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, tried again while its failure is worth it (`_classify`), at most `attempts` times.
        The first try is made directly; tenacity takes over after a failure worth another."""

        async def classified() -> T:
            try:
                return await call()
            except (openai.APIError, OSError) as exc:
                mapped = _classify(exc)
                if isinstance(mapped, _Retry | PromptTooLongError):
                    self._limits = None  # a restarted server may come back with other limits
                raise mapped from exc

        try:
            return await classified()
        except _Retry as first:
            if self._attempts <= 1:
                raise self._gave_up(first) from first.cause
            log.warning("tgi_retry", attempt=1, error=str(first))
        await asyncio.sleep(self._backoff)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retry),
            wait=wait_random_exponential(multiplier=self._backoff, max=self._backoff * 2**self._attempts),
            stop=stop_after_attempt(self._attempts - 1),
            before_sleep=lambda state: log.warning(
                "tgi_retry",
                attempt=state.attempt_number + 1,
                error=str(state.outcome.exception() if state.outcome else ""),
            ),
        )
        try:
            return await retrying(classified)
        except RetryError as gave_up:
            failure = gave_up.last_attempt.exception()
            assert isinstance(failure, _Retry)
            raise self._gave_up(failure) from failure.cause

    def _gave_up(self, failure: _Retry) -> ModelUnavailableError:
        return ModelUnavailableError(f"the model server at {self._root} failed {self._attempts} times: {failure}")

    def _silent(self) -> ModelUnavailableError:
        return ModelUnavailableError(f"the model server at {self._root} gave no answer within {self._deadline:g} s")


def _generator(chunks: AsyncStream[dict[str, Any]]) -> AsyncGenerator[dict[str, Any], None]:
    """The stream's own iterator (an async generator), so it is closed with the stream, not whenever
    the event loop gets to finalizing it."""
    iterator = chunks.__aiter__()
    assert isinstance(iterator, AsyncGenerator)
    return iterator


def _payload(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]
