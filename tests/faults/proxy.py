"""A loopback TCP proxy that can go away: what a database restart or a network cut looks like to a client.

`down()` resets every open connection and refuses new ones; `up()` listens again on the same port.
The target may be a TCP address or a PostgreSQL unix socket (the embedded server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.postgres import with_database


class Proxy:
    def __init__(self, target_host: str | None, target_port: int | None, target_socket: str | None = None) -> None:
        self.target_host, self.target_port, self.target_socket = target_host, target_port, target_socket
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @classmethod
    def to_database(cls, url: str) -> Proxy:
        parsed = urlparse(url.replace("postgresql+asyncpg://", "postgresql://"))
        socket_dir = parse_qs(parsed.query).get("host", [None])[0]
        if socket_dir:
            path = next(Path(socket_dir).glob(".s.PGSQL.*"))
            return cls(None, None, str(path))
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 5432)

    def database_url(self, url: str) -> str:
        """`url` (its user and database) reached through this proxy."""
        parsed = urlparse(url.replace("postgresql+asyncpg://", "postgresql://"))
        user = parsed.username or "postgres"
        password = f":{parsed.password}" if parsed.password else ""
        base = f"postgresql+asyncpg://{user}{password}@127.0.0.1:{self.port}/postgres"
        return with_database(base, parsed.path.lstrip("/"))

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            with contextlib.suppress(Exception):
                transport = writer.transport
                transport.abort()
        self._open.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.target_socket:
                upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.target_socket)
            else:
                upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, upstream_writer}

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(Exception):
                sink.transport.abort()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))
        self._open -= {writer, upstream_writer}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
