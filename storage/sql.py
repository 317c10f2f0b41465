"""Statements written with named parameters, and rows read back by column name.

SQL is written with `:name` parameters (`CAST(:name AS type)` where PostgreSQL needs a type) and
compiled once, by SQLAlchemy's compiler for asyncpg, to the `$n` form asyncpg runs. Values are
passed by name, usually straight from a dataclass (`values_of`), and rows become frozen
dataclasses by their column names (`read_row`), never by position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

T = TypeVar("T")
Row = Mapping[str, Any]

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


class Statement:
    """One SQL statement, compiled once: `sql` for asyncpg, and the parameter names in `$n` order."""

    __slots__ = ("names", "sql")

    def __init__(self, source: str) -> None:
        compiled = text(source).compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The values in the order asyncpg binds them; a missing name is a bug, said by name."""
        try:
            return [values[name] for name in self.names]
        except KeyError as missing:
            raise TypeError(f"the statement needs a value for {missing}") from None


_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _field_names(kind: type[Any]) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(field.name for field in dataclasses.fields(kind))
    return names


def values_of(value: Any) -> dict[str, Any]:
    """A dataclass's fields by name, as a statement's parameters (not recursive, unlike `asdict`)."""
    return {name: getattr(value, name) for name in _field_names(type(value))}


def read_row(kind: type[T], row: Row) -> T:
    """A dataclass from the row's columns of the same names (other columns are ignored)."""
    return kind(**{name: row[name] for name in _field_names(kind) if name in row})


def connect_arguments(url: str) -> dict[str, Any]:
    """What `asyncpg.connect` takes for a database URL (host, socket folder, TLS options and all),
    as SQLAlchemy's asyncpg dialect reads it."""
    _, arguments = _DIALECT.create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
    return dict(arguments)
