"""Every update, from polling or the webhook, on its way in: cleaned, read, handled or set aside.

PostgreSQL refuses NUL bytes and lone surrogates in text, and numbers beyond bigint: strings
are cleaned before anything reads them, and an update with such a number is refused. An update
that cannot be read (a field missing, of the wrong type) or whose handling fails a few times in
a row is set aside in `dead_letters`, with an apology to its chat when one can be told; one
whose type this code does not know is ignored. Either way it is confirmed, so it never blocks
the offset or other chats. A database outage is not the update's fault: it is waited out
without counting against the update, and nothing is confirmed meanwhile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import structlog
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from pydantic import ValidationError

from app.metrics import Metrics
from app.retry import retried, retrying
from app.services.commands import CommandService
from app.services.outbox import Outbox
from app.telegram import texts
from storage.errors import DatabaseError, DatabaseUnavailableError

log = structlog.get_logger(__name__)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ATTEMPTS = 3  # tries of an update whose handling fails, before it is set aside


@dataclass(frozen=True, slots=True)
class Incoming:
    """One raw update as read: its id and chat (for lanes and apologies), and the update or why not."""

    raw: Any
    update_id: int | None
    chat_id: int | None
    private: bool
    update: Update | None = None
    problem: str | None = None  # it cannot be handled: set aside at once


class _Refused(ValueError):
    pass


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any) -> Any:
    """A copy without what PostgreSQL cannot store; numbers beyond bigint are refused."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        if not value.isascii():
            value = _LONE_SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise _Refused(f"a number outside PostgreSQL's bigint range ({value})")
    return value


def _chat_in(raw: Any) -> tuple[int | None, bool]:
    """The chat an update (even an unreadable one) is about, if it names a storable one."""
    if not isinstance(raw, dict):
        return None, False
    for key, event in raw.items():
        if key == "update_id" or not isinstance(event, dict):
            continue
        chat = event.get("chat")
        if not isinstance(chat, dict) and isinstance(event.get("message"), dict):
            chat = event["message"].get("chat")
        if isinstance(chat, dict):
            chat_id = chat.get("id")
            if isinstance(chat_id, int) and not isinstance(chat_id, bool) and INT64_MIN <= chat_id <= INT64_MAX:
                return chat_id, chat.get("type") == "private"
    return None, False


def escaped(raw: Any) -> str:
    """The update as received, in ASCII (NUL and lone surrogates escaped), for the dead-letter row."""
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    try:
        return json.dumps(raw, ensure_ascii=True)
    except (TypeError, ValueError):
        return repr(raw)


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:1000]


class UpdateIntake:
    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        commands: CommandService,
        outbox: Outbox,
        metrics: Metrics,
        *,
        patience: float,
        attempts: int = ATTEMPTS,
    ) -> None:
        """`patience`: how long one update waits out a database outage (DATABASE_PATIENCE) before it
        is given back unconfirmed, for Telegram to deliver again."""
        self.bot = bot
        self.dispatcher = dispatcher
        self.commands = commands
        self.outbox = outbox
        self.metrics = metrics
        self.patience = patience
        self.attempts = attempts

    def read(self, raw: Any) -> Incoming:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool) or not INT64_MIN <= update_id <= INT64_MAX:
            update_id = None
        chat_id, private = _chat_in(raw)
        try:
            update = Update.model_validate(_clean(raw), context={"bot": self.bot})
        except _Refused as exc:
            return Incoming(raw, update_id, chat_id, private, problem=f"refused: {exc}")
        except ValidationError as exc:
            return Incoming(raw, update_id, chat_id, private, problem=f"unreadable update: {_validation(exc)}")
        try:
            update.event_type  # noqa: B018 - raises for a type this code does not know
        except UpdateTypeLookupError:
            log.info("update_type_unknown_ignored", update_id=update_id, keys=sorted(raw)[:5])
            return Incoming(raw, update_id, chat_id, private)
        return Incoming(raw, update_id, chat_id, private, update=update)

    async def handle(self, item: Incoming) -> bool:
        """True once the update is handled, ignored or set aside; False if a database outage outlasted
        the patience (nothing of it is confirmed then)."""
        if item.problem is not None:
            return await self._set_aside(item, item.problem, attempts=1)
        if item.update is None:
            return True
        update = item.update
        try:
            await retried(
                lambda: self._feed(update),
                "update_failed_retrying",
                retry_on=lambda e: not isinstance(e, DatabaseUnavailableError),
                patience=self.patience,
                attempts=self.attempts,
            )
        except DatabaseUnavailableError:
            return False
        except Exception as exc:
            log.error("update_failed_set_aside", update_id=item.update_id, attempts=self.attempts, error=_describe(exc))
            return await self._set_aside(item, _describe(exc), attempts=self.attempts)
        return True

    async def _feed(self, update: Update) -> None:
        """Handle the update, waiting out a database outage (it is not the update's fault)."""
        await retried(
            lambda: self.dispatcher.feed_update(self.bot, update),
            "update_waits_for_database",
            retry_on=lambda e: isinstance(e, DatabaseUnavailableError),
            patience=self.patience,
        )

    async def set_aside_unreadable(self, body: bytes, error: str) -> bool:
        """A webhook body that is not JSON at all."""
        return await self._set_aside(Incoming(body, None, None, False), error, attempts=1)

    async def _set_aside(self, item: Incoming, error: str, *, attempts: int) -> bool:
        apology = texts.UPDATE_SET_ASIDE if item.private else None
        try:
            async for attempt in retrying(
                "dead_letter_not_written", retry_on=lambda e: isinstance(e, DatabaseError), patience=self.patience
            ):
                with attempt:
                    queued = await self.commands.set_aside(
                        update_id=item.update_id,
                        chat_id=item.chat_id,
                        error=error,
                        raw=escaped(item.raw),
                        attempts=attempts,
                        apology=apology,
                    )
        except DatabaseError:
            return False
        log.warning("update_set_aside", update_id=item.update_id, chat_id=item.chat_id, error=error[:300])
        self.metrics.inc("aifriend_updates_set_aside_total")
        if queued and item.chat_id is not None:
            self.outbox.kick(item.chat_id)
        return True


def _validation(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)[:1000]
    where = ".".join(str(part) for part in errors[0]["loc"])
    return f"{where}: {errors[0]['msg']} ({exc.error_count()} problem(s))"[:1000]
