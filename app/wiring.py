"""Build the long-lived parts once from settings, and close them once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from app.persona import PersonaError, load_persona
from app.services.conversation import ConversationService
from app.settings import Settings, SettingsError
from llm.errors import ModelUnavailableError
from llm.sentiment import ClassifierScorer, SentimentScorer, VaderScorer
from llm.tgi import TGIChatModel
from llm.types import ChatModel
from scheduler.runner import worker_name
from scheduler.timing import CheckinPolicy
from storage.database import Database, open_database
from storage.errors import DatabaseUnreachableError

log = structlog.get_logger()


@dataclass(frozen=True)
class Services:
    database: Database
    model: ChatModel
    conversation: ConversationService


async def build_model(settings: Settings) -> ChatModel:
    if settings.llm_backend == "transformers":
        if not settings.llm_model:
            raise SettingsError(
                "invalid setting LLM_MODEL: required when LLM_BACKEND=transformers; set it to a model folder"
            )
        from llm.local import TransformersChatModel

        try:
            return await TransformersChatModel.load(settings.llm_model)
        except ModelUnavailableError as exc:
            raise SettingsError(f"invalid setting LLM_MODEL: {exc}") from None
    return TGIChatModel(settings.tgi_url, timeout=settings.llm_timeout.total_seconds(), api_key=_tgi_key(settings))


def _tgi_key(settings: Settings) -> str | None:
    return settings.tgi_api_key.get_secret_value() if settings.tgi_api_key else None


async def build_scorer(settings: Settings) -> SentimentScorer:
    if not settings.sentiment_model:
        return VaderScorer()
    try:
        return await ClassifierScorer.load(settings.sentiment_model)
    except ValueError as exc:
        raise SettingsError(f"invalid setting SENTIMENT_MODEL: {exc}") from None


async def connect_database(settings: Settings, *, patience: float | None) -> Database:
    """Open the database, waiting for it while it is unreachable: forever (`patience` None) for the
    long-running commands, so a bot started before its database simply waits for it."""
    started, attempt = time.monotonic(), 0
    while True:
        try:
            return await open_database(settings.database_url, settings.data_dir)
        except DatabaseUnreachableError as exc:
            attempt += 1
            if patience is not None and time.monotonic() - started >= patience:
                raise
            delay = min(30.0, 2.0**attempt)
            log.warning("database_unreachable", error=str(exc), retry_in=delay, attempt=attempt)
            await asyncio.sleep(delay)


@asynccontextmanager
async def services(
    settings: Settings,
    *,
    reply_debounce: bool = True,
    need_model: bool = True,
    role: str = "cli",
    database_patience: float | None = 30.0,
) -> AsyncIterator[Services]:
    """Persona, database, model and the conversation service, closed in reverse order."""
    try:
        persona = load_persona(settings.persona_file)
    except PersonaError as exc:
        raise SettingsError(str(exc)) from None
    scorer = await build_scorer(settings) if need_model else VaderScorer()
    database = await connect_database(settings, patience=database_patience)
    try:
        # Reports never generate: give them an idle TGI client rather than loading a local model.
        model = (
            await build_model(settings)
            if need_model
            else TGIChatModel(settings.tgi_url, timeout=5.0, api_key=_tgi_key(settings))
        )
        try:
            conversation = ConversationService(
                database=database,
                model=model,
                scorer=scorer,
                persona=persona,
                default_tz=settings.default_tz,
                stream_replies=settings.stream_replies,
                recall=settings.memory_recall,
                checkins=CheckinPolicy(
                    after=settings.checkin_after,
                    max_unanswered=settings.checkin_max_unanswered,
                    quiet_hours=settings.quiet_hours,
                    default_tz=settings.default_tz,
                ),
                reply_debounce=settings.reply_debounce if reply_debounce else type(settings.reply_debounce)(0),
                worker=worker_name(role),
            )
            try:
                yield Services(database, model, conversation)
            finally:
                await conversation.close()
        finally:
            await model.close()
    finally:
        await database.close()
