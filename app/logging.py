"""structlog set up once: JSON off a TTY, console on one, secrets masked everywhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from storage.errors import redact_values

_MASK = "***"


class SecretMasker:
    """Replaces known secret strings (bot token, database password) in every log field."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = self.mask(value)
            elif isinstance(value, BaseException | list | dict):
                event[key] = self.mask(repr(value))
        return event


def redact_database_values(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Error texts and tracebacks without the values a database error echoes (user text)."""
    for key in _ERROR_FIELDS:
        value = event.get(key)
        if isinstance(value, str):
            event[key] = redact_values(value)
    return event


_ERROR_FIELDS = ("error", "exception")


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's own logger, writing whole lines to a file, with the name of the module it logs for."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _named_write_logger_factory(file: TextIO) -> Callable[..., _NamedWriteLogger]:
    def factory(*_: Any) -> _NamedWriteLogger:
        # Made on a logger's first use (cache_logger_on_first_use): the first frame outside
        # structlog is the module that logs, as stdlib's LoggerFactory finds it.
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("structlog"):
            frame = frame.f_back
        return _NamedWriteLogger(file, frame.f_globals.get("__name__", "?"))

    return factory


def configure_logging(*, level: str = "INFO", fmt: str | None = None, secrets: Iterable[str | None] = ()) -> None:
    """One processor chain for our lines and for stdlib logging's (aiogram, SQLAlchemy, alembic).

    Our lines take structlog's own path (structlog's performance notes): a level below LOG_LEVEL
    costs nothing, and a line is rendered and written at once (about a fifth of what a trip
    through stdlib logging's records, handler and formatter cost: 93 against 20 us). Foreign
    lines go through stdlib's handler and get the same processors and rendering."""
    render_json = fmt == "json" or (fmt is None and not sys.stderr.isatty())
    masker = SecretMasker(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_database_values,
        masker,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if render_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_named_write_logger_factory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    # No line renders where a call came from, or which thread or process made it: the logging HOWTO's
    # "Optimization" switches skip collecting them (a frame walk per line; a fifth of a line's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # transitions narrates every callback at INFO; its state changes are logged here as fsm_transitioned
    for noisy in ("aiogram.event", "alembic", "httpx", "httpcore", "httpx2", "httpcore2", "asyncio", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric_level))
