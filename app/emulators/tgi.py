"""A model server emulator: the routes aifriend uses, as TGI's OpenAPI spec has them, and with
`dialect` as vLLM, SGLang or llama.cpp's server document theirs (`llm/servers.py` lists where they
differ): the token limits' route, the tokenize route, LoRA adapters by `model`, the error shapes.

Its "model" is an honest echo: every answer starts with ``[emulated model]`` and repeats
the start of the last user message (without a ``<recalled>`` or ``<stage>`` block: context marked as such is
not what the user said), cut to the token limit asked for. Token counts come
from a simple word-and-punctuation tokenizer applied to a chat template, and requests
are validated the way TGI's router validates them (422 when too long). Failures can be
scripted (429, 503, 424, errors inside a stream, latency) and every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from app.emulators.echo import MARKER, echo, pieces_of, template, token_count, tokenize
from app.emulators.prefix_cache import PrefixCache

__all__ = ["MARKER", "TGIEmulator", "template", "tokenize"]


@dataclass
class Fault:
    status: int
    error_type: str
    message: str


@dataclass
class TGIEmulator:
    max_input_tokens: int = 4095
    max_total_tokens: int = 4096
    dialect: str = "tgi"  # or "vllm", "sglang", "llamacpp"
    adapters: frozenset[str] = frozenset()  # LoRA adapters it serves (vLLM --lora-modules, SGLang --lora-paths)
    cache_tokens: int = 0  # >0: keep a prefix cache of this many tokens and count what each request reuses
    headers: list[dict[str, str]] = field(default_factory=list)  # each chat request's x-session-id and friends
    cache: PrefixCache | None = None
    latency: float = 0.0
    offer_tokenize: bool = True
    faults: list[Fault] = field(default_factory=list)
    break_streams: int = 0
    tokens_per_second: float = 0.0  # >0: the model writes at this pace (streamed or not), like a real one
    slots: int = 0  # >0: at most this many requests generate at once; the rest wait in the server's queue
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # each request's Authorization header
    rejected: int = 0
    api_key: str | None = None  # like `--api-key`: every route but /health wants `Authorization: Bearer <key>`
    unauthorized: int = 0
    in_flight: int = 0  # requests it is still answering (a latency still running counts)
    busiest: int = 0  # the most chat requests that were being answered at once
    _generating: int = 0
    _slots: asyncio.Semaphore | None = None
    _runner: web.AppRunner | None = None
    url: str = ""

    # ---- scripting ----
    def fail_next(self, status: int, error_type: str, message: str = "", times: int = 1) -> None:
        self.faults += [Fault(status, error_type, message or f"emulated {error_type}")] * times

    def chat_requests(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path == "/v1/chat/completions"]

    # ---- the model ----
    def echo(self, prompt_messages: list[dict[str, Any]], max_new: int) -> str:
        return echo(prompt_messages, max_new)

    # ---- HTTP ----
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._counted, self._auth])
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        if self.dialect == "tgi":
            app.router.add_get("/info", self._info)
            app.router.add_post("/tokenize", self._tokenize)
            app.router.add_post("/chat_tokenize", self._chat_tokenize)
        elif self.dialect == "vllm":
            app.router.add_post("/tokenize", self._vllm_tokenize)
        elif self.dialect == "llamacpp":
            app.router.add_get("/props", self._props)
            app.router.add_post("/tokenize", self._llamacpp_tokenize)
        if self.cache_tokens > 0:
            self.cache = PrefixCache(self.cache_tokens)
        return app

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
        keepalive_timeout: float = 75.0,
    ) -> str:
        """`tls`: served over HTTPS, as behind an ingress; `keepalive_timeout`: idle connections are
        closed by the server after this long (aiohttp's default, 75 s, unless a test wants it sooner)."""
        self._runner = web.AppRunner(
            self.app(), access_log=None, shutdown_timeout=1.0, keepalive_timeout=keepalive_timeout
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        await site.start()
        self.url = f"{'https' if tls else 'http'}://{host}:{self._runner.addresses[0][1]}"
        return self.url

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open (it closes idle ones after its keep-alive)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _counted(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        wanted = f"Bearer {self.api_key}"
        if self.api_key is not None and request.path != "/health" and request.headers.get("Authorization") != wanted:
            self.unauthorized += 1
            return web.json_response({"error": "Unauthorized", "error_type": "authentication"}, status=401)
        return await handler(request)

    def _error(self, status: int, message: str, error_type: str) -> web.Response:
        """An error as the dialect's server shapes it."""
        if self.dialect == "tgi":
            return web.json_response({"error": message, "error_type": error_type}, status=status)
        if self.dialect == "llamacpp":
            return web.json_response({"error": {"code": status, "message": message, "type": error_type}}, status=status)
        body = {"object": "error", "message": message, "type": error_type, "param": None, "code": status}
        return web.json_response(body, status=status)

    @property
    def served_model(self) -> str:
        return "aifriend/emulated-echo"

    async def _models(self, _: web.Request) -> web.Response:
        card: dict[str, Any] = {"id": self.served_model, "object": "model", "created": 0}
        if self.dialect == "tgi":  # TGI's card says no limits: those are in /info
            card["owned_by"] = self.served_model
        elif self.dialect == "llamacpp":
            card |= {"owned_by": "llamacpp", "meta": {"n_ctx_train": self.max_total_tokens}}
        else:
            card |= {"owned_by": self.dialect, "root": self.served_model, "max_model_len": self.max_total_tokens}
        cards = [card] + [
            {"id": name, "object": "model", "created": 0, "owned_by": self.dialect, "parent": self.served_model}
            for name in sorted(self.adapters)
            if self.dialect == "vllm"
        ]
        return web.json_response({"object": "list", "data": cards})

    async def _props(self, _: web.Request) -> web.Response:
        settings = {"n_ctx": self.max_total_tokens, "params": {"n_predict": -1, "temperature": 0.8}}
        return web.json_response(
            {"default_generation_settings": settings, "total_slots": 1, "model_path": "/models/emulated-echo.gguf"}
        )

    async def _vllm_tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        tokens = tokenize(template(body.get("messages") or []))
        return web.json_response(
            {"count": len(tokens), "max_model_len": self.max_total_tokens, "tokens": list(range(len(tokens)))}
        )

    async def _llamacpp_tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"tokens": list(range(len(tokenize(str(body.get("content", ""))))))})

    def _unknown_model(self, body: dict[str, Any]) -> web.Response | None:
        """vLLM and SGLang refuse a `model` (or adapter) they do not serve, with 404 and 400."""
        model = str(body.get("model") or "")
        if self.dialect == "vllm" and model not in {self.served_model, *self.adapters}:
            return self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if self.dialect == "sglang":
            base, _, adapter = model.partition(":")
            if base != self.served_model or (adapter and adapter not in self.adapters):
                return self._error(400, f"LoRA adapter or model {model!r} is not loaded.", "BadRequestError")
        return None

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_id": "aifriend/emulated-echo",
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128,
                "max_best_of": 2,
                "max_stop_sequences": 4,
                "max_input_tokens": self.max_input_tokens,
                "max_total_tokens": self.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": "3.3.6-emulated",
                "sha": None,
                "docker_label": None,
            }
        )

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _tokenize(self, request: web.Request) -> web.Response:
        if not self.offer_tokenize:
            return web.json_response({"error": "No fast tokenizer available"}, status=404)
        body = await request.json()
        tokens = tokenize(str(body.get("inputs", "")))
        return web.json_response([{"id": i, "text": t, "start": s, "stop": e} for i, (t, s, e) in enumerate(tokens)])

    async def _chat_tokenize(self, request: web.Request) -> web.Response:
        if not self.offer_tokenize:
            return web.json_response({"error": "No fast tokenizer available"}, status=404)
        body = await request.json()
        text = template(body.get("messages") or [])
        tokens = tokenize(text)
        return web.json_response(
            {
                "tokenize_response": [
                    {"id": i, "text": t, "start": s, "stop": e} for i, (t, s, e) in enumerate(tokens)
                ],
                "templated_text": text,
            }
        )

    def _validate(self, input_tokens: int, max_new: int | None) -> web.Response | None:
        if self.dialect != "tgi":
            return self._validate_context(input_tokens, max_new or 0)
        if input_tokens == 0:
            return self._error(422, "Input validation error: `inputs` cannot be empty", "validation")
        if input_tokens > self.max_input_tokens:
            self.rejected += 1
            return self._error(
                422,
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} tokens. "
                f"Given: {input_tokens}",
                "validation",
            )
        if max_new is not None and input_tokens + max_new > self.max_total_tokens:
            self.rejected += 1
            return self._error(
                422,
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. "
                f"Given: {input_tokens} `inputs` tokens and {max_new} `max_new_tokens`",
                "validation",
            )
        return None

    def _validate_context(self, input_tokens: int, max_new: int) -> web.Response | None:
        """vLLM, SGLang and llama.cpp check the prompt and the tokens asked for against one context length."""
        total = self.max_total_tokens
        if input_tokens + max_new <= total and input_tokens < total:
            return None
        self.rejected += 1
        if self.dialect == "vllm":
            message = (
                f"This model's maximum context length is {total} tokens. However, you requested "
                f"{input_tokens + max_new} tokens ({input_tokens} in the messages, {max_new} in the completion). "
                "Please reduce the length of the messages or completion."
            )
            return self._error(400, message, "BadRequestError")
        if self.dialect == "sglang":
            message = f"The input ({input_tokens} tokens) is longer than the model's context length ({total} tokens)."
            return self._error(400, message, "BadRequestError")
        return self._error(
            400, "the request exceeds the available context size, try increasing it", "exceed_context_size_error"
        )

    async def _before(self, path: str, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return {}, self._error(422, "Failed to deserialize the JSON body", "validation")
        self.requests.append((path, body))
        self.authorizations.append(request.headers.get("Authorization"))
        if path == "/v1/chat/completions":
            self.headers.append({k.lower(): v for k, v in request.headers.items() if k.lower().startswith("x-")})
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.faults:
            fault = self.faults.pop(0)
            return body, self._error(fault.status, fault.message, fault.error_type)
        return body, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.slots if self.slots > 0 else 1_000_000)
        async with self._slots:
            self._generating += 1
            self.busiest = max(self.busiest, self._generating)
            try:
                return await self._generate(request)
            finally:
                self._generating -= 1

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body, failed = await self._before("/v1/chat/completions", request)
        if failed:
            return failed
        messages = body.get("messages") or []
        input_tokens = token_count(template(messages)) if messages else 0
        max_new = body.get("max_tokens")
        invalid = self._unknown_model(body) or self._validate(input_tokens, max_new if max_new is not None else 1024)
        if invalid:
            return invalid
        budget = max_new if max_new is not None else self.max_total_tokens - input_tokens
        text = self.echo(messages, budget)
        generated = token_count(text)
        if self.cache is not None:
            self.cache.serve(
                [t for t, _, _ in tokenize(template(messages))], [t for t, _, _ in tokenize(text + "<|end|>")]
            )
        finish = "length" if generated >= budget else "stop"
        if body.get("stream"):
            return await self._stream_chat(request, text, finish)
        await asyncio.sleep(generated / self.tokens_per_second if self.tokens_per_second > 0 else 0.0)
        answer = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": generated,
            "total_tokens": input_tokens + generated,
        }
        return web.json_response({**_envelope("chat.completion"), "choices": [answer], "usage": usage})

    async def _stream_chat(self, request: web.Request, text: str, finish: str) -> web.StreamResponse:
        """Server-sent chunks, one per token, that add up to exactly the non-streamed text; a broken
        stream (`break_streams`) ends half-way with an error event, as TGI's do."""
        response = await self._sse(request)
        pieces = pieces_of(text)
        broken = self.break_streams > 0
        if broken:
            self.break_streams -= 1
        for index, piece in enumerate(pieces):
            if broken and index == len(pieces) // 2:
                failure = {"error": {"message": "emulated failure mid-stream", "http_status_code": 422}}
                await self._event(response, failure)
                await response.write(b"data: [DONE]\n\n")
                return response
            if self.tokens_per_second > 0:
                await asyncio.sleep(1 / self.tokens_per_second)
            await self._event(response, _chunk(piece, None))
        await self._event(response, _chunk("", finish))
        await response.write(b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())


def _envelope(kind: str) -> dict[str, Any]:
    return {
        "object": kind,
        "id": "",
        "created": int(time.time()),
        "model": "aifriend/emulated-echo",
        "system_fingerprint": "3.3.6-emulated",
    }


def _chunk(piece: str, finish: str | None) -> dict[str, Any]:
    delta = {"index": 0, "delta": {"role": "assistant", "content": piece}, "logprobs": None, "finish_reason": finish}
    return {**_envelope("chat.completion.chunk"), "choices": [delta], "usage": None}
