"""What can go wrong with the database, as the rest of aifriend sees it; each says what to do.

Every failure of a statement leaves `storage` as one of these (`translate`, the one place that
reads the driver's exceptions), with the values PostgreSQL echoes in its messages hidden.
"""

from __future__ import annotations

import re

import asyncpg


class DatabaseError(Exception):
    """Base of storage errors; ``str()`` is meant for the operator and carries no user text."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached or cannot serve now (down, restarting, full, the process
    stopping): nothing is wrong with the data, so the same work can be tried again later."""


class DatabaseConfigError(DatabaseError):
    """The server answered but refuses us (wrong password, no such database): retrying cannot help."""


class ConflictError(DatabaseError):
    """A row that must be unique was written by someone else first."""


class SchemaOutdatedError(DatabaseError):
    def __init__(self, current: str | None, head: str) -> None:
        super().__init__(
            f"the database schema is at revision {current or 'none (empty database)'} but this "
            f"version needs {head}; run `aifriend migrate` against DATABASE_URL, then start again"
        )


class EmbeddedPostgresError(DatabaseError):
    pass


# SQLSTATE classes that say "try again later" rather than "this input is wrong": connection
# exceptions, the server shutting down or starting, out of resources, serialization and deadlocks.
_TRANSIENT_SQLSTATES = ("08", "57P", "53", "40001", "40P01")
_REFUSED_SQLSTATES = ("28", "3D000")  # bad credentials, no such database


def translate(exc: BaseException) -> DatabaseError:
    """The storage error for a driver or socket failure (a `DatabaseError` is returned as it is)."""
    if isinstance(exc, DatabaseError):
        return exc
    state = str(getattr(exc, "sqlstate", "") or "")
    message = redact_values(f"{exc.__class__.__name__}: {exc}")[:1000]
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(message)
    if state.startswith(_REFUSED_SQLSTATES):
        return DatabaseConfigError(message)
    if state.startswith(_TRANSIENT_SQLSTATES) or _connection_lost(exc):
        return DatabaseUnavailableError(message)
    return DatabaseError(message)


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError) or (isinstance(exc, OSError) and exc.errno is not None):
        return True
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.PostgresConnectionError):
        return True
    # asyncpg's InterfaceError also covers bad arguments (a number out of range): only a closed
    # connection, or a pool that is closing, says nothing about the data.
    text = str(exc)
    return isinstance(exc, asyncpg.InterfaceError) and any(
        words in text
        for words in ("connection is closed", "connection was closed", "pool is closing", "pool is closed")
    )


# Where PostgreSQL and asyncpg quote the offending value back in an error message: these echoes
# would carry what a user wrote into logs and operator messages.
_ECHOED_VALUES = (
    re.compile(r"""(query argument \$\d+: )(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)"""),
    re.compile(r"""(for (?:type|encoding) [\w"]+: )(?:"(?:[^"\\]|\\.)*"|\S+)"""),
    re.compile(r"(Key \([^)]*\)=\()(?:[^()]|\([^()]*\))*(\))"),
)


def redact_values(message: str) -> str:
    """An error message without the data values PostgreSQL or asyncpg echo in it."""
    for pattern in _ECHOED_VALUES:
        message = pattern.sub(
            lambda m: m.group(1) + "<value hidden>" + (m.group(2) if m.lastindex == 2 else ""), message
        )
    return message
