"""Database problems an operator can meet, each saying what to do."""

import re


class DatabaseError(Exception):
    """Base for storage errors; ``str()`` is meant for the operator."""


class SchemaOutdatedError(DatabaseError):
    def __init__(self, current: str | None, head: str) -> None:
        super().__init__(
            f"the database schema is at revision {current or 'none (empty database)'} but this "
            f"version needs {head}; run `aifriend migrate` against DATABASE_URL, then start again"
        )


class DatabaseUnreachableError(DatabaseError):
    pass


class EmbeddedPostgresError(DatabaseError):
    pass


class DatabaseConfigError(DatabaseError):
    """The server answered but refuses us (wrong password, no such database): retrying cannot help."""


# SQLSTATE classes that say "try again later" rather than "this input is wrong": connection
# exceptions, the server shutting down or starting, out of resources, serialization and deadlocks.
_TRANSIENT_SQLSTATES = ("08", "57P", "53", "40001", "40P01")
_REFUSED_SQLSTATES = ("28", "3D000")  # bad credentials, no such database


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        stack += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return seen


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or "")


def is_refused(exc: BaseException) -> bool:
    """The database refused these credentials or this database name."""
    return any(_sqlstate(e).startswith(_REFUSED_SQLSTATES) for e in _chain(exc))


def is_transient(exc: BaseException) -> bool:
    """A failure of the connection to the database (or of the database itself) rather than of the data.

    Such a failure says nothing about the update being handled: it is retried without counting
    against the update, for as long as the outage lasts."""
    from sqlalchemy import exc as sa_exc

    for e in _chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sa_exc.TimeoutError | sa_exc.DisconnectionError):  # the pool, not the data
            return True
        if isinstance(e, ConnectionError | TimeoutError) or (isinstance(e, OSError) and e.errno is not None):
            return True
        if _sqlstate(e).startswith(_TRANSIENT_SQLSTATES):
            return True
        # asyncpg's InterfaceError also covers bad arguments (a number out of range): only a closed
        # connection counts here.
        if e.__class__.__module__.startswith("asyncpg") and (
            e.__class__.__name__ in ("ConnectionDoesNotExistError", "PostgresConnectionError")
            or "connection is closed" in str(e)
            or "connection was closed" in str(e)
        ):
            return True
    return False


# Where PostgreSQL and asyncpg quote the offending value back in an error message. Parameters
# are hidden by the engine (hide_parameters), but these echoes would still carry what a user wrote.
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
