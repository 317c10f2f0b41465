"""The companion's services, built once and shared by the bot, the terminal chat, the scheduler,
the demo and the tests: a message goes `intake` → `responder`; commands go to `commands`;
the periodic jobs call `healer`, `checkins`, `memory` and the outbox's sweep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from app.metrics import Metrics
from app.persona import Persona
from app.services.access import AccessDesk
from app.services.background import Background
from app.services.checkins import CheckinService
from app.services.commands import CommandService
from app.services.cooldown import Cooldown
from app.services.followups import FollowupRules, Followups
from app.services.healer import Healer
from app.services.holds import Holds
from app.services.intake import Intake
from app.services.memory import MemoryKeeper
from app.services.model_queue import FairQueue
from app.services.operators import OperatorReports
from app.services.outbox import Outbox
from app.services.responder import Responder
from app.services.values import Received, Reply, ReplyRules
from app.services.writer import ReplyWriter
from fsm import RelationshipMachine
from llm.sentiment import SentimentScorer
from llm.types import ChatModel
from scheduler.timing import CheckinPolicy
from storage.database import Database
from storage.rows import UserInfo


@dataclass(frozen=True)
class Friend:
    database: Database
    model: ChatModel
    persona: Persona
    rules: ReplyRules
    metrics: Metrics
    background: Background
    intake: Intake
    responder: Responder
    healer: Healer
    commands: CommandService
    checkins: CheckinService
    cooldown: Cooldown
    memory: MemoryKeeper
    reports: OperatorReports
    access: AccessDesk
    followups: Followups

    @classmethod
    def build(
        cls,
        *,
        database: Database,
        model: ChatModel,
        scorer: SentimentScorer,
        persona: Persona,
        rules: ReplyRules,
        policy: CheckinPolicy | None = None,
        metrics: Metrics | None = None,
        llm_timeout: float = 30.0,
        checkin_lease: timedelta = timedelta(seconds=30),
        model_concurrency: int = 0,
        followup_rules: FollowupRules | None = None,
    ) -> Friend:
        policy = policy or CheckinPolicy(default_tz=rules.default_tz)
        metrics = metrics or Metrics()
        machine = RelationshipMachine(persona.fsm_thresholds)
        background = Background()
        queue = FairQueue(model_concurrency, metrics)
        writer = ReplyWriter(model=model, persona=persona, metrics=metrics, timeout=llm_timeout, queue=queue)
        memory = MemoryKeeper(database=database, model=model, persona=persona, queue=queue)
        holds = Holds(database=database, notices=persona.notices, rules=rules, metrics=metrics)
        followups = Followups(
            database=database,
            writer=writer,
            persona=persona,
            rules=rules,
            followups=followup_rules or FollowupRules(quiet_hours=policy.quiet_hours),
            metrics=metrics,
        )
        responder = Responder(
            database=database,
            writer=writer,
            memory=memory,
            holds=holds,
            followups=followups,
            rules=rules,
            metrics=metrics,
            background=background,
        )
        cooldown = Cooldown(database=database, machine=machine, metrics=metrics)
        access = AccessDesk(rules.access, rules.default_tz)
        return cls(
            database=database,
            model=model,
            persona=persona,
            rules=rules,
            metrics=metrics,
            background=background,
            intake=Intake(
                database=database, scorer=scorer, machine=machine, checkins=policy, rules=rules, metrics=metrics
            ),
            responder=responder,
            healer=Healer(database=database, responder=responder, rules=rules, background=background),
            commands=CommandService(
                database=database, persona=persona, machine=machine, checkins=policy, metrics=metrics, access=access
            ),
            checkins=CheckinService(
                database=database,
                writer=writer,
                cooldown=cooldown,
                policy=policy,
                rules=rules,
                metrics=metrics,
                lease=checkin_lease,
            ),
            cooldown=cooldown,
            memory=memory,
            reports=OperatorReports(database),
            access=access,
            followups=followups,
        )

    async def take(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        outbox: Outbox,
        *,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
        kind: str = "text",
    ) -> Received:
        """Store a message now; if this process became the chat's responder, answer it in the background.
        `kind`: "voice" for a voice note's transcript."""
        received = await self.receive(
            chat_id, user, text, telegram_message_id=telegram_message_id, update_id=update_id, kind=kind
        )
        if received.responder:
            self.background.spawn(self.responder.respond(chat_id, outbox, received.context))
        return received

    async def handle_text(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        outbox: Outbox,
        *,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
    ) -> list[Reply]:
        """The whole path for one message, awaited; replies only if this call became the responder."""
        received = await self.receive(chat_id, user, text, telegram_message_id=telegram_message_id, update_id=update_id)
        if not received.responder:
            return []
        return await self.responder.respond(chat_id, outbox, received.context)

    async def receive(
        self,
        chat_id: int,
        user: UserInfo,
        text: str,
        *,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
        kind: str = "text",
    ) -> Received:
        """Store and score a message and move the relationship (`Intake`); a new day's first message
        has the previous day summarized in the background."""
        received = await self.intake.receive(
            chat_id, user, text, telegram_message_id=telegram_message_id, update_id=update_id, kind=kind
        )
        if received.day_ended is not None:  # the first message of a new day: yesterday gets its summary
            ended = received.day_ended
            self.background.spawn(self.memory.summarize_day(chat_id, ended.day, ended.zone))
        return received
