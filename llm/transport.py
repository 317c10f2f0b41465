"""huggingface_hub's HTTP client on asyncio's own streams.

huggingface_hub speaks through httpx2, whose connection layer (httpcore2) reaches the network
through anyio. On asyncio that adds a cancel scope around every read and write and rebuilds a
table of socket attributes each time a pooled connection is checked: a fifth of the bot's CPU
went to it in `bench_bot`'s profile. This backend gives httpcore2 the same streams on asyncio
directly. Everything above it (httpx2, huggingface_hub's requests, errors and parsing) is
unchanged; the client is installed through huggingface_hub's documented
`set_async_client_factory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore2
import httpx2
from huggingface_hub import set_async_client_factory
from huggingface_hub.utils import _http as hf_http

READ_CHUNK = 65536
CLOSE_PATIENCE = 1.0  # seconds a closing connection may take before it is cut


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], other: type[Exception]) -> Iterator[None]:
    """httpcore2's own exceptions, as its anyio backend raises them (httpx2 maps those in turn)."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError, ssl.SSLError) as exc:
        raise other(str(exc) or exc.__class__.__name__) from exc


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore2.ReadTimeout, httpcore2.ReadError):
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore2.WriteTimeout, httpcore2.WriteError):
            self._writer.write(buffer)
            if self._writer.transport.get_write_buffer_size() == 0:
                return  # written at once, as almost always on a request of a few kilobytes
            if timeout is None:
                await self._writer.drain()
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_PATIENCE):  # a TLS peer that never answers the close
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except (OSError, ssl.SSLError):
            pass

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        with _mapped(httpcore2.ConnectTimeout, httpcore2.ConnectError):
            try:
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
            except BaseException:
                await self.aclose()
                raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Readable while idle in the pool: the server closed it (or sent what nobody asked for).
            return self._reader.at_eof() or len(getattr(self._reader, "_buffer", b"")) > 0
        if info in ("socket", "ssl_object"):
            return self._writer.get_extra_info(info)
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        with _mapped(httpcore2.ConnectTimeout, httpcore2.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, limit=READ_CHUNK
                )
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        with _mapped(httpcore2.ConnectTimeout, httpcore2.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=READ_CHUNK)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport (its pool, limits, TLS and proxy settings from the environment), with
    connections from `AsyncioBackend`. Proxied connections keep httpcore2's own backend."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(self._pool, httpcore2.AsyncConnectionPool):
            self._pool._network_backend = AsyncioBackend()


def asyncio_client() -> httpx2.AsyncClient:
    """huggingface_hub's default async client (its request and response hooks), on `AsyncioTransport`."""
    return httpx2.AsyncClient(
        transport=AsyncioTransport(),
        event_hooks={"request": [hf_http.async_hf_request_event_hook],
                     "response": [hf_http.async_hf_response_event_hook]},
        follow_redirects=True,
        timeout=None,
    )


def use_asyncio_transport() -> None:
    set_async_client_factory(asyncio_client)
