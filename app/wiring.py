"""Build the long-lived parts once from settings, and close them once: the composition root."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from app.metrics import Metrics
from app.persona import Persona, PersonaError, load_persona
from app.retry import retrying
from app.services.followups import FollowupRules
from app.services.friend import Friend
from app.services.gate import AccessRules
from app.services.values import ReplyRules
from app.settings import Settings, SettingsError
from fsm import Stage
from llm.errors import ModelUnavailableError
from llm.routing import secret_from
from llm.sentiment import ClassifierScorer, SentimentScorer, VaderScorer
from llm.servers import AdapterUnsupportedError, model_field
from llm.tgi import TGIChatModel
from llm.types import ChatModel
from migrations import schema
from scheduler.runner import claim_lease
from scheduler.timing import CheckinPolicy
from storage.database import Database, connect, describe_url, resolve_database_url
from storage.errors import DatabaseConfigError, DatabaseUnavailableError

POOL_SIZE = 20  # connections one process opens at most, and only as load needs them


def worker_name(role: str) -> str:
    """This process, as reply leases, outbox claims and check-in claims name it."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


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
    return tgi_model(settings)


def tgi_model(settings: Settings, *, timeout: float | None = None) -> TGIChatModel:
    """The model server at TGI_URL, of the kind MODEL_SERVER names (or detected); every replica of a
    deployment derives the same per-chat routing keys from the bot token they share."""
    key = settings.tgi_api_key.get_secret_value() if settings.tgi_api_key else None
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    return TGIChatModel(
        settings.tgi_url,
        timeout=timeout or settings.llm_timeout.total_seconds(),
        api_key=key,
        server=settings.model_server,
        routing_secret=secret_from(token),
        context_tokens=settings.model_max_tokens,
    )


def check_adapters(settings: Settings, persona: Persona) -> None:
    """A persona's LoRA adapters on a server that cannot choose one per request: a start-up error."""
    if settings.llm_backend != "tgi" or settings.model_server == "auto":
        return
    for stage in Stage:
        try:
            model_field(settings.model_server, "", persona.style(stage).adapter_id)
        except AdapterUnsupportedError as exc:
            raise SettingsError(f"invalid setting MODEL_SERVER={settings.model_server}: {exc}") from None


async def build_scorer(settings: Settings) -> SentimentScorer:
    if not settings.sentiment_model:
        return VaderScorer()
    try:
        return await ClassifierScorer.load(settings.sentiment_model)
    except ValueError as exc:
        raise SettingsError(f"invalid setting SENTIMENT_MODEL: {exc}") from None


async def open_database(settings: Settings, *, patience: timedelta) -> Database:
    """Connect, waiting up to `patience` while the server is unreachable (a bot started before its
    database waits for it). An embedded database is migrated to head; an external one must be."""
    embedded = settings.database_url is None
    url = await asyncio.to_thread(resolve_database_url, settings.database_url, settings.data_dir)
    if embedded:
        await asyncio.to_thread(schema.upgrade, url)
    try:
        async for attempt in retrying(
            "database_unreachable",
            retry_on=lambda e: isinstance(e, DatabaseUnavailableError),
            patience=patience.total_seconds(),
        ):
            with attempt:
                database = await connect(
                    url,
                    pool_size=POOL_SIZE,
                    embedded=embedded,
                    connect_patience=settings.database_patience.total_seconds(),
                )
                try:
                    schema.check_at_head(await database.schema_revision())
                except BaseException:
                    await database.close()
                    raise
    except DatabaseConfigError as exc:
        raise DatabaseConfigError(
            f"the database at {describe_url(url)} refused the connection ({exc}); "
            "check the user, password and database name in DATABASE_URL"
        ) from None
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database at {describe_url(url)} ({exc}); "
            "check DATABASE_URL and that the server is running"
        ) from None
    return database


@asynccontextmanager
async def services(
    settings: Settings,
    *,
    reply_debounce: bool = True,
    need_model: bool = True,
    role: str = "cli",
    patience: timedelta = timedelta(seconds=30),
    model: ChatModel | None = None,
) -> AsyncIterator[Friend]:
    """Persona, database, model and the services, closed in reverse order. `model`: one the caller
    built (the terminal's emulated model) instead of the one the settings name. `patience`: how long
    to wait for an unreachable database (OUTAGE_PATIENCE for the long-running commands)."""
    try:
        persona = load_persona(settings.persona_file)
    except PersonaError as exc:
        raise SettingsError(str(exc)) from None
    check_adapters(settings, persona)
    scorer = await build_scorer(settings) if need_model else VaderScorer()
    database = await open_database(settings, patience=patience)
    try:
        # Reports never generate: give them an idle client rather than loading a local model.
        model = model or (await build_model(settings) if need_model else tgi_model(settings, timeout=5.0))
        rules = ReplyRules(
            worker=worker_name(role),
            debounce=settings.reply_debounce if reply_debounce else timedelta(0),
            recall=8 if settings.memory_recall else 0,
            default_tz=settings.default_tz,
            stream=settings.stream_replies,
            access=AccessRules(
                mode=settings.access_mode,
                admins=settings.admin_ids,
                replies_per_minute=settings.limit_replies_per_minute,
                tokens_per_day=settings.limit_tokens_per_day,
                newcomers_per_minute=settings.newcomers_per_minute,
            ),
        )
        policy = CheckinPolicy(
            after=settings.checkin_after,
            max_unanswered=settings.checkin_max_unanswered,
            quiet_hours=settings.quiet_hours,
            default_tz=settings.default_tz,
        )
        friend = Friend.build(
            database=database,
            model=model,
            scorer=scorer,
            persona=persona,
            rules=rules,
            policy=policy,
            metrics=Metrics(),
            llm_timeout=settings.llm_timeout.total_seconds(),
            checkin_lease=claim_lease(settings.checkin_sweep_every),
            model_concurrency=settings.model_concurrency,
            followup_rules=FollowupRules(
                enabled=settings.followups, delay=settings.followup_delay, quiet_hours=settings.quiet_hours
            ),
        )
        try:
            yield friend
        finally:
            await friend.background.stop(0)
            await model.close()
    finally:
        await database.close()
