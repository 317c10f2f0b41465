"""`aifriend run` and `aifriend scheduler`: the long-running processes, from start to a clean exit.

Start-up waits for Telegram (up to OUTAGE_PATIENCE) rather than failing. On SIGTERM a process
stops taking updates, gives replies and sends in flight SHUTDOWN_GRACE to finish, then hands its
reply leases, outbox claims and check-in claims back so another process takes over at once. A
token Telegram refuses (revoked, mistyped) stops the process the same way, then exits 2 with one
line naming BOT_TOKEN.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from aiogram import Bot

from app.heap import settle_heap
from app.metrics import Health, serve_metrics
from app.readiness import Stage, database_check, model_check
from app.services.delivery import DeliveryQueue
from app.services.friend import Friend
from app.services.outbox import TransportRefusedError
from app.services.values import utcnow
from app.services.voice import VoiceNotes
from app.settings import Settings
from app.telegram.bot import introduce, make_bot, make_dispatcher, stop_webhook_delivery
from app.telegram.files import BotFiles
from app.telegram.polling import poll
from app.telegram.transport import TelegramTransport
from app.telegram.updates import UpdateIntake
from app.telegram.webhook import listen, register
from llm.speech import SpeechUnavailableError, Transcriber, load_recognizer
from scheduler.runner import Job, running
from storage.conversations import ConversationRepo
from storage.errors import DatabaseError
from storage.leases import LeaseRepo

log = structlog.get_logger(__name__)

OUTBOX_SWEEP_EVERY = timedelta(seconds=1)  # retries and a dead sender's claims are picked up this often
HEAL_EVERY = timedelta(seconds=2)
HOURLY = timedelta(hours=1)  # forgetting old update ids, refreshing recall's common words
UPDATE_IDS_KEPT = timedelta(days=7)  # Telegram redelivers for 24 hours at most


class Stopper:
    """Why the process is stopping: a signal, or something only an operator can fix (`fail`)."""

    def __init__(self, event: asyncio.Event | None = None) -> None:
        self.event = event or asyncio.Event()
        self.failure: BaseException | None = None

    def fail(self, failure: BaseException) -> None:
        if self.failure is None:
            self.failure = failure
        self.event.set()

    def on_signals(self) -> Stopper:
        """SIGINT and SIGTERM end the process cleanly: replies in flight are finished first (within the grace)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.event.set)
        return self


def _outbox(friend: Friend, bot: Bot, stopper: Stopper) -> DeliveryQueue:
    return DeliveryQueue(
        friend.database,
        TelegramTransport(bot),
        worker=friend.rules.worker,
        metrics=friend.metrics,
        on_refused=stopper.fail,
    )


def maintenance(friend: Friend, outbox: DeliveryQueue) -> list[Job]:
    """What a bot process does now and then besides answering."""

    async def prune() -> None:
        pruned = await ConversationRepo(friend.database).prune_updates(utcnow() - UPDATE_IDS_KEPT)
        if pruned:
            log.info("processed_updates_pruned", rows=pruned)

    async def refresh_common_words() -> None:
        log.info("recall_common_words_refreshed", words=await friend.memory.refresh_common_words())

    return [
        Job("outbox_sweep", OUTBOX_SWEEP_EVERY, outbox.sweep),
        Job("heal", HEAL_EVERY, lambda: friend.healer.heal(outbox)),
        Job("prune_update_ids", HOURLY, prune),
        Job("recall_common_words", HOURLY, refresh_common_words),
    ]


def checkin_sweeps(friend: Friend, outbox: DeliveryQueue, settings: Settings) -> list[Job]:
    return [
        Job("checkin_sweep", settings.checkin_sweep_every, lambda: friend.checkins.sweep(outbox)),
        Job("followup_sweep", settings.checkin_sweep_every, lambda: friend.followups.sweep(outbox)),
    ]


async def hearing(settings: Settings, friend: Friend, bot: Bot) -> VoiceNotes | None:
    """Voice notes, if the configured recogniser loads (once, off the event loop); otherwise one
    line saying why and what to do, and voice notes get the text-only answer."""
    try:
        recognizer = await asyncio.to_thread(load_recognizer, settings.asr_backend, settings.asr_model)
    except SpeechUnavailableError as exc:
        log.warning("voice_notes_off", reason=str(exc))
        return None
    if recognizer is None:
        log.info("voice_notes_off", reason="ASR_BACKEND=off")
        return None
    log.info("voice_notes_on", backend=recognizer.name, model=settings.asr_model)
    return VoiceNotes(
        friend=friend,
        files=BotFiles(bot),
        transcriber=Transcriber(recognizer),
        max_seconds=settings.voice_max_seconds,
        # A note is transcribed in well under half its length on a CPU: a claim older than that
        # belongs to a process that died, and the sweep hears the note again.
        lease=timedelta(seconds=max(20, settings.voice_max_seconds // 2)),
    )


def readiness(friend: Friend, stage: Stage) -> Health:
    """`/readyz`: the database and its schema, and `stage` (taking updates, or sweeping); the model is shown only."""
    health = Health(friend.metrics)
    health.required["database"] = database_check(friend.database)
    health.required[stage.name] = stage.check
    health.informative["model"] = model_check(friend.model, friend.metrics)
    return health


@contextlib.asynccontextmanager
async def exposing_metrics(settings: Settings, health: Health) -> AsyncIterator[None]:
    """Prometheus `/metrics`, `/healthz` and `/readyz` on METRICS_LISTEN, when it is set."""
    if settings.metrics_listen is None:
        yield
        return
    runner = await serve_metrics(health.metrics, settings.metrics_listen, health)
    try:
        yield
    finally:
        await runner.cleanup()


async def serve(
    settings: Settings, friend: Friend, *, stopper: Stopper | None = None, with_scheduler: bool = True
) -> None:
    """Run until stopped (a signal, or `stopper` when embedded in the demo), then hand over cleanly."""
    stopper = stopper or Stopper().on_signals()
    bot = make_bot(settings)
    outbox = _outbox(friend, bot, stopper)
    voice = await hearing(settings, friend, bot)
    dispatcher = make_dispatcher(friend, outbox, settings.admin_ids, voice)
    intake = UpdateIntake(
        bot, dispatcher, friend.commands, outbox, friend.metrics, patience=settings.database_patience.total_seconds()
    )
    taking = Stage("telegram", "waiting for Telegram to answer getMe")
    health = readiness(friend, taking)
    jobs = maintenance(friend, outbox) + (checkin_sweeps(friend, outbox, settings) if with_scheduler else [])
    if voice is not None:  # notes a process left half-heard (it died) are heard here
        jobs.append(Job("voice_sweep", HEAL_EVERY, lambda: voice.sweep(outbox)))
    try:
        # Probes answer from the start: a replica waiting for Telegram is alive but not ready.
        async with exposing_metrics(settings, health):
            if await introduce(bot, stopper.event, patience=settings.outage_patience.total_seconds()) is None:
                return
            settle_heap()
            async with running(jobs) as periodic:
                try:
                    await _take_updates(
                        settings, friend, bot, intake, dispatcher.resolve_used_update_types(), stopper, taking
                    )
                except TransportRefusedError as exc:
                    stopper.fail(exc)
                health.stopping = True
                deadline = time.monotonic() + settings.shutdown_grace.total_seconds()
                await periodic.stop(_left(deadline))
            if with_scheduler:
                await _release_checkin_claims(friend)
            await _hand_over(friend, outbox, deadline)
    finally:
        await bot.session.close()
    if stopper.failure is not None:
        raise stopper.failure


async def _take_updates(
    settings: Settings,
    friend: Friend,
    bot: Bot,
    intake: UpdateIntake,
    allowed: list[str],
    stopper: Stopper,
    taking: Stage,
) -> None:
    """Long polling, or the webhook when WEBHOOK_URL is set, until the process is told to stop."""
    stop, patience = stopper.event, settings.outage_patience.total_seconds()
    if not settings.webhook_url:
        await stop_webhook_delivery(bot, stop, patience=patience)
        log.info("polling_started")
        taking.reach("long polling")
        await poll(bot, intake, allowed, stop, patience=patience)
        return
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    runner = await listen(intake, settings.webhook_url, settings.webhook_listen, secret)
    try:
        await register(
            bot,
            friend.database,
            url=settings.webhook_url,
            secret=secret,
            allowed=allowed,
            worker=friend.rules.worker,
            stop=stop,
            patience=patience,
        )
        if stop.is_set():
            return
        log.info("webhook_listening", listen=settings.webhook_listen)
        taking.reach(f"webhook on {settings.webhook_listen}")
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve_scheduler(settings: Settings, friend: Friend) -> None:
    """`aifriend scheduler`: check-in sweeps only, sending through the same outbox."""
    stopper = Stopper().on_signals()
    bot = make_bot(settings)
    outbox = _outbox(friend, bot, stopper)
    sweeps = Stage("scheduler", "starting")
    health = readiness(friend, sweeps)
    try:
        async with exposing_metrics(settings, health), running(checkin_sweeps(friend, outbox, settings)) as periodic:
            settle_heap()
            sweeps.reach(f"sweeping every {settings.checkin_sweep_every.total_seconds():g} s")
            await stopper.event.wait()
            health.stopping = True
            deadline = time.monotonic() + settings.shutdown_grace.total_seconds()
            await periodic.stop(_left(deadline))
        await _release_checkin_claims(friend)
        await _hand_over(friend, outbox, deadline)
    finally:
        await bot.session.close()
    if stopper.failure is not None:
        raise stopper.failure


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


async def _hand_over(friend: Friend, outbox: DeliveryQueue, deadline: float) -> None:
    """Finish replies and sends in flight by `deadline`; hand the chats and sends left back at once."""
    log.info("stopping", grace_seconds=round(_left(deadline), 1))
    late = await friend.background.stop(_left(deadline))
    if late:
        log.warning("shutdown_cut_short", tasks=late)
    with contextlib.suppress(DatabaseError):
        released = await LeaseRepo(friend.database).release_all(friend.rules.worker)
        if released:
            log.info("reply_leases_handed_back", chats=released)
    await outbox.close(_left(deadline))


async def _release_checkin_claims(friend: Friend) -> None:
    try:
        await friend.checkins.release_claims()
    except DatabaseError as exc:  # the database may be gone too: the claims then expire with their lease
        log.warning("checkin_claims_not_released", error=str(exc)[:300])
