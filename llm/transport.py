"""huggingface_hub's HTTP client on aiohttp, the HTTP stack the bot already runs for Telegram.

huggingface_hub speaks through httpx2. Its default connection layer (httpcore2 and h11, over
anyio) parses HTTP in Python and writes a request's headers and body in two sends; it was a
quarter of the bot's CPU per reply in `bench_bot`'s profile. This transport hands each request
httpx2 builds to aiohttp (HTTP parsed in C, headers and body in one write) and gives httpx2
back a response it reads as its own. Everything above it (httpx2's redirects and decoding,
huggingface_hub's requests, errors and parsing) is unchanged; the client is installed through
huggingface_hub's documented `set_async_client_factory`.

Trust is httpx2's own (`create_ssl_context`: the system's store, or SSL_CERT_FILE/SSL_CERT_DIR).
Proxies from the environment stay with httpx2, which mounts its own transport for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
from huggingface_hub import set_async_client_factory
from huggingface_hub.utils import _http as hf_http
from multidict import CIMultiDict

from llm.gate import released

MAX_CONNECTIONS = 100  # httpx2's default limit
KEEPALIVE = 5.0  # seconds an idle connection is kept (httpx2's default)


class _Body(httpx2.AsyncByteStream):
    """The response body as aiohttp reads it; closing it early closes the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(httpx2.ReadTimeout, httpx2.ReadError):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class _mapped:
    """aiohttp's failures as the httpx2 exceptions huggingface_hub and `llm.tgi` expect."""

    def __init__(self, timeout_error: type[httpx2.TimeoutException], other: type[httpx2.TransportError]) -> None:
        self._timeout = timeout_error
        self._other = other

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if exc is None or isinstance(exc, httpx2.HTTPError | asyncio.CancelledError):
            return
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            raise httpx2.ConnectTimeout(str(exc) or "connect timed out") from exc
        if isinstance(exc, TimeoutError):  # aiohttp's socket timeouts are TimeoutErrors too
            raise self._timeout(str(exc) or "timed out") from exc
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise httpx2.ConnectError(str(exc)) from exc
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            raise httpx2.RemoteProtocolError(str(exc) or exc.__class__.__name__) from exc
        if isinstance(exc, aiohttp.ClientError | OSError):
            raise self._other(str(exc) or exc.__class__.__name__) from exc


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport that sends through one aiohttp session (opened on first use, in the
    running loop) with the same TLS trust, connection limit and keep-alive as httpx2's own."""

    def __init__(self) -> None:
        self._ssl = httpx2.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=self._ssl, keepalive_timeout=KEEPALIVE),
                auto_decompress=False,  # httpx2 decodes by Content-Encoding itself
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                trust_env=False,  # httpx2 routes proxied requests elsewhere
            )
        return self._session

    def _timeout(self, request: httpx2.Request) -> aiohttp.ClientTimeout:
        """httpx2's per-request timeouts: waiting for a pooled connection, connecting, each read."""
        limits = request.extensions.get("timeout", {})
        key = (limits.get("pool"), limits.get("connect"), limits.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        return timeout

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await released()  # a request prepared while its message was being stored leaves once it is stored
        body = await request.aread()
        headers = CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw)
        with _mapped(httpx2.ReadTimeout, httpx2.ConnectError):
            response = await self._opened().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            )
        return httpx2.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def aiohttp_client() -> httpx2.AsyncClient:
    """huggingface_hub's default async client (its request and response hooks), on `AiohttpTransport`."""
    return httpx2.AsyncClient(
        transport=AiohttpTransport(),
        event_hooks={
            "request": [hf_http.async_hf_request_event_hook],
            "response": [hf_http.async_hf_response_event_hook],
        },
        follow_redirects=True,
        timeout=None,
    )


def use_aiohttp_transport() -> None:
    set_async_client_factory(aiohttp_client)
