"""Long silences: a `close` chat the user left alone for weeks cools back to `warming` (trigger
`cooldown`). The check-in sweeps fire it; it moves the stage, nothing else."""

from __future__ import annotations

from datetime import datetime

from app.metrics import Metrics
from app.services.stages import announce
from app.services.values import fsm_columns, snapshot_of, transition_records, utcnow
from fsm import RelationshipMachine, SilenceEvent
from storage.checkins import CheckinRepo
from storage.conversations import ConversationRepo
from storage.database import Database


class Cooldown:
    def __init__(self, *, database: Database, machine: RelationshipMachine, metrics: Metrics) -> None:
        self.database = database
        self.machine = machine
        self.metrics = metrics

    async def sweep(self, now: datetime, batch: int) -> int:
        """Cool every `close` chat silent for longer than the persona's threshold; how many cooled."""
        silent = await CheckinRepo(self.database).silent_close(now - self.machine.limits.cooldown_after, batch)
        return sum([await self.cool_down(chat_id, now) for chat_id in silent])

    async def cool_down(self, chat_id: int, now: datetime | None = None) -> bool:
        """Fire the long-silence event for one chat; True when it cooled."""
        now = now or utcnow()
        async with self.database.transaction() as tx:
            conversations = ConversationRepo(tx)
            row = await conversations.lock(chat_id)
            if row is None or row.last_user_message_at is None:
                return False
            outcome = self.machine.advance(snapshot_of(row), SilenceEvent(now - row.last_user_message_at))
            if not outcome.changed:
                return False
            await conversations.move(chat_id, fsm_columns(outcome.snapshot))
            await conversations.add_transitions(chat_id, transition_records(outcome.transitions))
        announce(self.metrics, outcome.transitions)
        return True
