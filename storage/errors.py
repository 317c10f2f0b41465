"""Database problems an operator can meet, each saying what to do."""


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
