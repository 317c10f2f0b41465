"""structlog set up once: JSON off a TTY, console on one, secrets masked everywhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
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


def configure_logging(
    *, level: str = "INFO", fmt: str | None = None, secrets: Iterable[str | None] = (), file: Path | None = None
) -> None:
    """One processor chain for our lines and for stdlib logging's (aiogram, alembic).

    Our lines take structlog's own path (structlog's performance notes): a level below LOG_LEVEL
    costs nothing, and a line is rendered and written at once. Foreign lines go through stdlib's
    handler and get the same processors and rendering. `file`: write there instead of stderr (a
    command talking to a person in the terminal)."""
    stream: TextIO = sys.stderr
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        stream = file.open("a", encoding="utf-8", buffering=1)
    on_terminal = stream.isatty()
    render_json = fmt == "json" or (fmt is None and not on_terminal)
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
        structlog.processors.JSONRenderer() if render_json else structlog.dev.ConsoleRenderer(colors=on_terminal)
    )
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=lambda *names: _NamedWriteLogger(stream, str(names[0]) if names else "?"),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    # No line renders where a call came from, or which thread or process made it: the logging HOWTO's
    # "Optimization" section switches off collecting them (a frame walk per line).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # transitions narrates every callback at INFO; its state changes are logged here as fsm_transitioned
    for noisy in ("aiogram.event", "alembic", "httpx2", "httpcore2", "openai", "asyncio", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric_level))
