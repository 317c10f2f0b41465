"""structlog set up once: JSON off a TTY, console on one, secrets masked everywhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

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

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
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


def configure_logging(
    *, level: str = "INFO", fmt: str | None = None, secrets: Iterable[str | None] = ()
) -> None:
    """Route structlog and stdlib logging (aiogram, SQLAlchemy) through one processor chain."""
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
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
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
    root.setLevel(level)
    for noisy in ("aiogram.event", "alembic", "httpx", "httpcore", "httpx2", "httpcore2", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))

