"""The reply path's connections: plain asyncpg connections in a free list, for single statements.

The reply path takes a connection four times per message, for one statement each, outside any
transaction. asyncpg's own pool wraps each checkout in a proxy and each return in a shielded task
(two turns of the event loop) and a timer: 0.16 ms of CPU per statement on a warm process and
0.7 ms on one that sat idle between messages, against 0.07 and 0.35 ms with a free list. This one
is a free list (the most recently used connection first: its caches are warm), bounded, with
waiters served in order. It needs no reset: nothing here sets anything on a connection or leaves
a transaction open.

When the server refuses a connection because it is full (`max_connections`, or a role's or a
database's connection limit: more replicas than it was sized for), a checkout waits for one of
the process's own connections to come back instead of failing the reply it was for, and for a
second no more are tried: the pool shrinks to what the server grants. Only a process with no
connection at all gets the error.

A connection is given back only after a block that ended normally. After any exception the
statement's state is unknown (cancelled half-way, a broken socket), so the connection is closed
and the next checkout opens another: that is also how a connection the server dropped is replaced.

Its connections plan each prepared statement once (`plan_cache_mode = force_generic_plan`).
Left to choose, PostgreSQL planned the context read afresh on every execution for a single chat
(its estimate for one array element beats the kept plan's for ten), 1.1 ms of server CPU per
reply, and the delivery record likewise: the kept plans are the same index lookups.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

IDLE_LIFETIME = 300.0  # seconds a spare connection is kept once a burst is over
SERVER_FULL_PAUSE = 1.0  # seconds no connection is opened beside those held, once the server said it is full
CLOSED = "the reply path's connections are closed: the process is stopping"


class PoolClosedError(ConnectionError):
    """The process is stopping: no new statements on the reply path."""


class DirectPool:
    """At most `size` connections, opened as load needs them (on first use: they need the loop)."""

    def __init__(self, connect_arguments: dict[str, Any], size: int, *, idle_lifetime: float = IDLE_LIFETIME) -> None:
        self._arguments = connect_arguments
        self._size = size
        self._idle_lifetime = idle_lifetime
        self._free: list[tuple[asyncpg.Connection, float]] = []  # with when each was given back
        self._in_use: set[asyncpg.Connection] = set()
        self._opened = 0  # open or opening
        self._waiting: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._all_back = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._full_until = 0.0  # loop time until which the server is taken to be full
        self._on_connect: list[Callable[[asyncpg.Connection], Awaitable[None]]] = []

    def on_connect(self, callback: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """Run `callback` on each connection the pool opens from now on (benchmarks count statements)."""
        self._on_connect.append(callback)

    def connection(self) -> _Checkout:
        """`async with pool.connection() as connection:` one connection for a block."""
        return _Checkout(self)

    async def acquire(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise PoolClosedError(CLOSED)
            while self._free:
                connection, _ = self._free.pop()
                if not connection.is_closed():
                    self._in_use.add(connection)
                    return connection
                self._opened -= 1
            if self._opened < self._size and not self._server_full():
                try:
                    return await self._open()
                except asyncpg.TooManyConnectionsError:
                    if not self._opened:
                        raise  # none of ours is open or opening: nothing to wait for
                    self._full_until = asyncio.get_running_loop().time() + SERVER_FULL_PAUSE
            waiter: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())  # handed over just as its taker gave up
                raise
            if handed is not None:
                return handed
            # None: a connection was closed, so there is room to open one: try again

    def _server_full(self) -> bool:
        """The server refused a connection a moment ago, and this process has some to share."""
        return self._opened > 0 and asyncio.get_running_loop().time() < self._full_until

    async def _open(self) -> asyncpg.Connection:
        self._opened += 1
        try:
            connection = await asyncpg.connect(**self._arguments)
            try:
                # A SET rather than a startup parameter: connection poolers refuse parameters they do not know.
                await connection.execute("SET plan_cache_mode = force_generic_plan")
                for callback in self._on_connect:
                    await callback(connection)
            except BaseException:
                connection.terminate()
                raise
        except BaseException:
            self._opened -= 1
            self._make_room()
            raise
        self._in_use.add(connection)
        return connection

    def release(self, connection: asyncpg.Connection) -> None:
        """Give back a connection whose statement finished."""
        self._in_use.discard(connection)
        if self._closed or connection.is_closed() or connection.is_in_transaction():
            self._drop(connection)
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._in_use.add(connection)
                waiter.set_result(connection)
                return
        now = asyncio.get_running_loop().time()
        self._free.append((connection, now))
        while len(self._free) > 1 and now - self._free[0][1] > self._idle_lifetime:
            self._drop(self._free.pop(0)[0])

    def discard(self, connection: asyncpg.Connection) -> None:
        """A connection whose block failed: what it was doing is unknown, so it is not used again."""
        self._in_use.discard(connection)
        self._drop(connection)

    def _drop(self, connection: asyncpg.Connection) -> None:
        self._opened -= 1
        if not connection.is_closed():
            task = asyncio.get_running_loop().create_task(self._close_one(connection))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._make_room()

    @staticmethod
    async def _close_one(connection: asyncpg.Connection) -> None:
        try:
            await asyncio.wait_for(connection.close(), 5)
        except (Exception, asyncio.CancelledError):
            connection.terminate()

    def _make_room(self) -> None:
        """One connection fewer: the first waiter may open one."""
        if not self._in_use and self._closed:
            self._all_back.set()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self, patience: float = 5.0) -> None:
        """Close once every connection is back; one still held after `patience` s is cut (the
        process is stopping, and its work was given its grace period before this)."""
        self._closed = True
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(PoolClosedError(CLOSED))
        self._waiting.clear()
        free, self._free = self._free, []
        for connection, _ in free:
            self._drop(connection)
        if self._in_use:
            self._all_back.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_back.wait(), patience)
            for connection in list(self._in_use):
                connection.terminate()
            self._in_use.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class _Checkout:
    """The block's connection: given back if the block ended normally, closed if it raised."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: DirectPool) -> None:
        self._pool = pool
        self._connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._pool.acquire()
        return self._connection

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self._connection is not None
        if kind is None:
            self._pool.release(self._connection)
        else:
            self._pool.discard(self._connection)
        self._connection = None
