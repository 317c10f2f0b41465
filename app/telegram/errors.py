"""What a failed Bot API call means, decided in one place.

Not done, safe to retry: a 429 (wait its `retry_after`), a 5xx with an answer, an answer that is
not the Bot API's (a proxy's HTML page), a connection that was never made. Unknown: the
connection died or timed out after the request left; Telegram may have the message, and the Bot
API has no idempotency key, so it is sent again (at least once). Done for good: a 400 (it cannot
work however often it is tried) or a 403 (the user blocked the bot). A 401 means the token was
revoked or is wrong: nothing will work until an operator changes BOT_TOKEN, so the process stops.
"""

from __future__ import annotations

from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiohttp import ClientConnectorError

from app.services.drafts import DraftOutcome
from app.services.outbox import SendOutcome, TransportRefusedError
from app.settings import SettingsError

TOKEN_REFUSED = (
    "invalid setting BOT_TOKEN: Telegram refused it (401 Unauthorized), so it was revoked or mistyped; "
    "get a valid token from @BotFather, set BOT_TOKEN and start again"
)


class TokenRefusedError(SettingsError, TransportRefusedError):
    def __init__(self) -> None:
        super().__init__(TOKEN_REFUSED)


def worth_retrying(exc: BaseException) -> bool:
    """For calls that must succeed sooner or later (getMe, getUpdates, setWebhook): anything that
    can pass by itself. A refused token cannot."""
    if isinstance(exc, TelegramUnauthorizedError):
        return False
    return isinstance(exc, TelegramAPIError | ClientDecodeError | OSError | TimeoutError)


def send_outcome(exc: BaseException) -> SendOutcome:
    """What is known after a send that failed with `exc` (`TokenRefusedError` is raised instead)."""
    if isinstance(exc, TelegramUnauthorizedError):
        raise TokenRefusedError() from exc
    if isinstance(exc, TelegramRetryAfter):
        return SendOutcome("retry", retry_after=float(exc.retry_after), error=f"429: {exc.message}")
    if isinstance(exc, TelegramForbiddenError):
        return SendOutcome("blocked", error=f"403: {exc.message}")
    if isinstance(exc, TelegramBadRequest):
        if "message is not modified" in exc.message:  # an edit made before a crash: it is there
            return SendOutcome("sent")
        return SendOutcome("give_up", error=f"400: {exc.message}")
    if isinstance(exc, TelegramNotFound | TelegramEntityTooLarge | TelegramMigrateToChat):
        return SendOutcome("give_up", error=f"{exc.__class__.__name__}: {exc.message}")
    if isinstance(exc, TelegramNetworkError):
        never_connected = isinstance(exc.__cause__, ClientConnectorError)
        return SendOutcome("retry", error=exc.message, unknown=not never_connected)
    if isinstance(exc, ClientDecodeError):
        return SendOutcome("retry", error=f"not a Bot API answer: {str(exc)[:200]}")
    if isinstance(exc, TelegramAPIError):  # 5xx, and whatever else Telegram may answer one day
        return SendOutcome("retry", error=f"{exc.__class__.__name__}: {exc.message}")
    raise exc


def draft_outcome(exc: BaseException) -> DraftOutcome:
    """A draft is a courtesy: no failure of it is worth more than a pause or turning drafts off."""
    if isinstance(exc, TelegramRetryAfter):
        return DraftOutcome("retry", retry_after=float(exc.retry_after), error=exc.message)
    if isinstance(exc, TelegramNotFound):  # an older or self-hosted Bot API server
        return DraftOutcome("unsupported", error=f"404: {exc.message}")
    if isinstance(exc, TelegramBadRequest):
        unknown = "method" in exc.message.lower() and "not found" in exc.message.lower()
        return DraftOutcome("unsupported" if unknown else "failed", error=f"400: {exc.message}")
    return DraftOutcome("failed", error=f"{exc.__class__.__name__}: {exc}")
