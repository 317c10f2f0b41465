"""Everything a user does that is not plain text: commands, buttons, stickers, unreadable updates.

Each update is one unit of work: its id is recorded, what it does is stored and its answer is
queued in the outbox, all in one transaction. So a command is answered exactly once: if
anything fails, nothing of it is kept and the update is handled again; if it succeeded, a
redelivery finds its id and is skipped, and the queued answer is sent by whichever worker
gets to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from app.metrics import Metrics
from app.persona import Persona
from app.services.access import AccessDesk
from app.services.stages import announce
from app.services.text import storable, text_sends
from app.services.values import fsm_columns, plan_checkin, snapshot_of, transition_records, utcnow
from fsm import RelationshipMachine, ResetEvent, Stage
from scheduler.timing import CheckinPolicy
from storage.conversations import ConversationRepo
from storage.database import Database, Transaction
from storage.dead_letters import DeadLetterRepo
from storage.export import export_user
from storage.followups import FollowupRepo
from storage.memory import Forgotten, MemoryRepo, Remembered
from storage.outbox import OutboxRepo, Outgoing
from storage.rows import ConversationRow, UserInfo

log = structlog.get_logger(__name__)


@dataclass
class UpdateUnit:
    """One update's transaction, and the chats it queued answers for (to send once committed)."""

    tx: Transaction
    chat_id: int
    user: UserInfo
    queued: set[int] = field(default_factory=set)
    then: list[Callable[[], object]] = field(default_factory=list)  # to run once the unit is committed


class CommandService:
    def __init__(
        self,
        *,
        database: Database,
        persona: Persona,
        machine: RelationshipMachine,
        checkins: CheckinPolicy,
        metrics: Metrics,
        access: AccessDesk | None = None,
    ) -> None:
        self.access = access
        self.database = database
        self.persona = persona
        self.machine = machine
        self.checkins = checkins
        self.metrics = metrics

    @contextlib.asynccontextmanager
    async def handling(
        self, chat_id: int, user: UserInfo, *, update_id: int | None = None
    ) -> AsyncIterator[UpdateUnit | None]:
        """A unit of work for one update; None when the update was handled before."""
        async with self.database.transaction() as tx:
            if update_id is not None and not await ConversationRepo(tx).record_update(update_id, chat_id):
                log.info("update_duplicate_skipped")
                yield None
                return
            if self.access is not None and await self.access.is_blocked(tx, user.user_id):
                log.info("blocked_user_ignored")  # an operator blocked them: nothing, not even an answer
                yield None
                return
            yield UpdateUnit(tx, chat_id, user)

    async def _open(self, unit: UpdateUnit) -> ConversationRow:
        """The locked conversation, created (with its `start` transition) on first contact."""
        conversations = ConversationRepo(unit.tx)
        row, created = await conversations.open(unit.chat_id, unit.user)
        if created:
            start = RelationshipMachine.begin().transitions
            await conversations.add_transitions(unit.chat_id, transition_records(start))
            log.info("conversation_started")
            announce(self.metrics, start)
        return row

    async def open_conversation(self, unit: UpdateUnit) -> ConversationRow:
        """The chat's conversation, started if this is the user's first contact."""
        return await self._open(unit)

    async def _queue(self, unit: UpdateUnit, sends: list[Outgoing], message_id: int | None = None) -> None:
        await OutboxRepo(unit.tx).enqueue(unit.chat_id, sends, message_id=message_id)
        unit.queued.add(unit.chat_id)

    async def _store(self, unit: UpdateUnit, *, role: str, kind: str, text: str) -> int:
        return await ConversationRepo(unit.tx).add_message(
            unit.chat_id, role=role, kind=kind, text=storable(text) or "…", answered=role == "user"
        )

    async def answer(
        self,
        unit: UpdateUnit,
        text: str,
        *,
        command: str | None = None,
        kind: str = "command",
        reply_markup: dict[str, Any] | None = None,
        stored_as: str | None = None,
    ) -> None:
        """Store the user's command (if given) and the bot's answer, and queue the answer.
        `stored_as`: what the history keeps instead of an answer that carries a secret."""
        await self._open(unit)
        if command is not None:
            await self._store(unit, role="user", kind="command", text=command)
        message_id = await self._store(unit, role="assistant", kind=kind, text=stored_as or text)
        await self._queue(unit, text_sends(text, reply_markup), message_id)

    async def greet(self, unit: UpdateUnit, command: str = "/start") -> None:
        """`/start`: open the conversation (icebreaker) and say hello."""
        row = await self._open(unit)
        await self.answer(unit, self.persona.greeting, command=command, kind="greeting")
        planned = plan_checkin(self.checkins, utcnow(), enabled=row.checkins_enabled)
        await ConversationRepo(unit.tx).greeted(unit.chat_id, next_checkin_at=planned)

    async def reset(self, unit: UpdateUnit, command: str = "/clear") -> Stage:
        """`/clear`: back to icebreaker with a fresh short-term history (trigger `reset`)."""
        row = await self._open(unit)
        await self._store(unit, role="user", kind="command", text=command)
        outcome = self.machine.advance(snapshot_of(row), ResetEvent())
        conversations = ConversationRepo(unit.tx)
        await conversations.reset(unit.chat_id, fsm_columns(outcome.snapshot))
        await conversations.add_transitions(unit.chat_id, transition_records(outcome.transitions))
        log.info("conversation_reset")
        announce(self.metrics, outcome.transitions)
        return outcome.snapshot.stage

    async def note_other(self, unit: UpdateUnit, what: str, answer: str) -> None:
        """Something that is not text (a sticker, a photo): kept for operators, answered kindly."""
        await self._open(unit)
        await self._store(unit, role="user", kind="other", text=what)
        message_id = await self._store(unit, role="assistant", kind="other", text=answer)
        await self._queue(unit, text_sends(answer), message_id)

    async def set_timezone(self, unit: UpdateUnit, timezone: str) -> None:
        await self._open(unit)
        await ConversationRepo(unit.tx).set_timezone(unit.user.user_id, timezone)

    async def set_checkins(self, unit: UpdateUnit, enabled: bool) -> None:
        row = await self._open(unit)
        last = max(filter(None, (row.last_user_message_at, row.last_checkin_at)), default=utcnow())
        planned = plan_checkin(self.checkins, last, enabled=enabled, unanswered=row.checkins_unanswered)
        await ConversationRepo(unit.tx).set_checkins(unit.chat_id, enabled=enabled, next_checkin_at=planned)

    async def checkins_enabled(self, unit: UpdateUnit) -> bool:
        row = await ConversationRepo(unit.tx).get(unit.chat_id)
        return row is None or row.checkins_enabled

    async def timezone(self, unit: UpdateUnit) -> str | None:
        row = await ConversationRepo(unit.tx).get(unit.chat_id)
        return row.timezone if row is not None else None

    async def forget(self, unit: UpdateUnit) -> int:
        """Delete every row about the user (their queued messages included); how many users went."""
        return await ConversationRepo(unit.tx).forget(unit.user.user_id)

    async def remembered(self, unit: UpdateUnit, days: int = 7) -> Remembered:
        """`/memory`: the notebook, the latest day summaries, how much recall can reach."""
        await self._open(unit)
        return await MemoryRepo(unit.tx).remembered(unit.chat_id, days)

    async def searchable(self, unit: UpdateUnit, words: str) -> bool:
        """Whether `words` are specific enough to forget by (not only stop words)."""
        await self._open(unit)
        return await MemoryRepo(unit.tx).forget_query(unit.chat_id, words) is not None

    async def ask_to_forget(
        self, unit: UpdateUnit, command: str, text: str, buttons: Callable[[int], dict[str, Any]]
    ) -> None:
        """Store `/memory forget WORDS` and ask for confirmation; the buttons name the stored command
        (`buttons(message_id)`), so the answer finds the words again, however long they are."""
        await self._open(unit)
        command_id = await self._store(unit, role="user", kind="command", text=command)
        message_id = await self._store(unit, role="assistant", kind="command", text=text)
        await self._queue(unit, text_sends(text, buttons(command_id)), message_id)

    async def stored_command(self, unit: UpdateUnit, message_id: int) -> str | None:
        """The text of a command this chat sent (for a button under its answer)."""
        return await ConversationRepo(unit.tx).command_text(unit.chat_id, message_id)

    async def forget_memory(self, unit: UpdateUnit, words: str) -> Forgotten | None:
        forgotten = await MemoryRepo(unit.tx).forget(unit.chat_id, words)
        plans = await FollowupRepo(unit.tx).forget_words(unit.chat_id, words)
        if plans:
            log.info("plans_forgotten", plans=plans)
        if forgotten is not None:
            log.info(
                "memory_forgotten",
                messages=forgotten.messages,
                notebook_lines=forgotten.notebook_lines,
                day_lines=forgotten.day_lines,
            )
        return forgotten

    async def edit(self, unit: UpdateUnit, message_id: int, text: str) -> None:
        """Change a message already sent (the answer under a button): queued like any message."""
        await self._queue(unit, [Outgoing("editMessageText", {"text": text, "message_id": message_id})])

    async def export(self, unit: UpdateUnit) -> dict[str, Any] | None:
        return await export_user(unit.tx, unit.user.user_id)

    async def send_document(self, unit: UpdateUnit, *, filename: str, content: str, caption: str, command: str) -> None:
        await self._open(unit)
        await self._store(unit, role="user", kind="command", text=command)
        message_id = await self._store(unit, role="assistant", kind="command", text=caption)
        document = Outgoing("sendDocument", {"filename": filename, "content": content, "caption": caption})
        await self._queue(unit, [document], message_id)

    async def set_aside(
        self, *, update_id: int | None, chat_id: int | None, error: str, raw: str, attempts: int, apology: str | None
    ) -> bool:
        """Dead-letter an update (once), apologizing to its chat when one can be told; True if queued."""
        async with self.database.transaction() as tx:
            new = await DeadLetterRepo(tx).add(
                update_id=update_id, chat_id=chat_id, error=error, raw=raw, attempts=attempts
            )
            if new and apology and chat_id is not None:
                await OutboxRepo(tx).enqueue(chat_id, text_sends(apology))
                return True
        return False
