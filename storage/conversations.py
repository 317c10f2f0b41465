"""Conversations and their users: creation, the per-chat lock, FSM state, the reply lease."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.dto import ConversationRow
from storage.models import (
    Conversation,
    DeadLetter,
    Message,
    Outbox,
    ProcessedUpdate,
    StateTransition,
    User,
    table_of,
)

# The statements of the reply path are built once, with bound parameters, on the tables
# rather than the ORM classes: building a statement, computing its cache key and the ORM's
# bookkeeping cost SQLAlchemy more CPU than PostgreSQL spends running it.
_CONVERSATIONS, _USERS = table_of(Conversation), table_of(User)
_COLUMNS = [c for c in _CONVERSATIONS.c if c.name not in ("created_at", "updated_at")]
_GET = (
    select(*_COLUMNS, _USERS.c.timezone, _USERS.c.username, _USERS.c.first_name)
    .join(_USERS, _USERS.c.id == _CONVERSATIONS.c.user_id)
    .where(_CONVERSATIONS.c.chat_id == bindparam("b_chat_id"))
)
_LOCK = _GET.with_for_update(of=_CONVERSATIONS)
_RECORD_UPDATE = (
    insert(table_of(ProcessedUpdate))
    .values(update_id=bindparam("b_update_id"), chat_id=bindparam("b_chat_id"))
    .on_conflict_do_nothing()
    .returning(table_of(ProcessedUpdate).c.update_id)
)
_ADD_TRANSITIONS = insert(table_of(StateTransition))
_COUNT_BOT_MESSAGE = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.chat_id == bindparam("b_chat_id"))
    .values(
        bot_messages=_CONVERSATIONS.c.bot_messages + 1,
        last_bot_message_at=func.now(),
        reply_lease_until=bindparam("b_lease_until", type_=_CONVERSATIONS.c.reply_lease_until.type),
        updated_at=func.now(),
    )
)
_HOLDS_LEASE = (
    select(_CONVERSATIONS.c.reply_lease_owner)
    .where(_CONVERSATIONS.c.chat_id == bindparam("b_chat_id"))
    .with_for_update()
)


@cache
def _update_of(columns: frozenset[str]) -> Any:
    """`UPDATE conversations SET <columns>` for one chat, built once per set of columns."""
    settable = {name: bindparam(f"b_{name}", type_=_CONVERSATIONS.c[name].type) for name in columns}
    return (
        update(_CONVERSATIONS)
        .where(_CONVERSATIONS.c.chat_id == bindparam("b_chat_id"))
        .values(updated_at=func.now(), **settable)
    )


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: int
    username: str | None = None
    first_name: str | None = None
    language_code: str | None = None


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    from_state: str | None
    to_state: str
    trigger: str
    user_messages: int
    sentiment_negative: float | None
    sentiment_positive: float | None


def _row(mapping: Any) -> ConversationRow:
    return ConversationRow(**{k: mapping[k] for k in ConversationRow.__slots__ if k in mapping})


class ConversationRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure(self, chat_id: int, user: UserInfo) -> bool:
        """Create the user and the conversation if new; True when the conversation is new."""
        await self.session.execute(
            insert(User)
            .values(
                id=user.user_id, username=user.username, first_name=user.first_name, language_code=user.language_code
            )
            .on_conflict_do_update(
                index_elements=[User.id],
                set_={
                    "username": user.username,
                    "first_name": user.first_name,
                    "language_code": user.language_code,
                    "updated_at": func.now(),
                },
                where=or_(
                    User.username.is_distinct_from(user.username), User.first_name.is_distinct_from(user.first_name)
                ),
            )
        )
        created = await self.session.scalar(
            insert(Conversation)
            .values(chat_id=chat_id, user_id=user.user_id)
            .on_conflict_do_nothing()
            .returning(Conversation.chat_id)
        )
        return created is not None

    async def lock(self, chat_id: int) -> ConversationRow | None:
        """The conversation, locked until the transaction ends: the per-chat order."""
        return await self.get(chat_id, for_update=True)

    async def get(self, chat_id: int, *, for_update: bool = False) -> ConversationRow | None:
        query = _LOCK if for_update else _GET
        row = (await self.session.execute(query, {"b_chat_id": chat_id})).mappings().first()
        return _row(row) if row else None

    async def update(self, chat_id: int, **values: Any) -> None:
        params = {f"b_{name}": value for name, value in values.items()}
        await self.session.execute(_update_of(frozenset(values)), {"b_chat_id": chat_id, **params})

    async def add_transitions(
        self, chat_id: int, transitions: list[TransitionRecord], message_id: int | None = None
    ) -> None:
        if transitions:
            await self.session.execute(
                _ADD_TRANSITIONS,
                [{"chat_id": chat_id, "message_id": message_id, **vars_of(t)} for t in transitions],
            )

    async def holds_lease(self, chat_id: int, worker: str) -> bool:
        """Lock the conversation; True while `worker` is still the one writing its replies."""
        owner = (await self.session.execute(_HOLDS_LEASE, {"b_chat_id": chat_id})).first()
        return owner is not None and owner[0] in (worker, None)

    async def release_leases(self, worker: str) -> int:
        """Hand back every reply lease of a worker that is stopping, so another takes the chats at once."""
        result = await self.session.execute(
            update(Conversation)
            .where(Conversation.reply_lease_owner == worker)
            .values(reply_lease_until=None, reply_lease_owner=None)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def count_bot_message(self, chat_id: int, *, lease_until: datetime) -> None:
        await self.session.execute(_COUNT_BOT_MESSAGE, {"b_chat_id": chat_id, "b_lease_until": lease_until})

    async def record_update(self, update_id: int, chat_id: int | None) -> bool:
        """Remember a Telegram update id; False when it was seen before."""
        seen = await self.session.scalar(_RECORD_UPDATE, {"b_update_id": update_id, "b_chat_id": chat_id})
        return seen is not None

    async def prune_updates(self, before: datetime) -> int:
        """Forget update ids older than Telegram ever redelivers (it keeps updates for 24 hours)."""
        result = await self.session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.received_at < before))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        await self.session.execute(
            update(User).where(User.id == user_id).values(timezone=timezone, updated_at=func.now())
        )

    async def take_lease(self, chat_id: int, worker: str, until: datetime, now: datetime) -> bool:
        """Become the chat's responder unless a live one exists."""
        taken = await self.session.scalar(
            update(Conversation)
            .where(
                Conversation.chat_id == chat_id,
                or_(Conversation.reply_lease_until.is_(None), Conversation.reply_lease_until < now),
            )
            .values(reply_lease_until=until, reply_lease_owner=worker)
            .returning(Conversation.chat_id)
        )
        return taken is not None

    async def chats_owed_a_reply(self, now: datetime, limit: int = 100) -> list[int]:
        """Chats with an unanswered user message and no live responder: what a crashed worker left."""
        # Driven from the small partial index of unanswered messages, not from every conversation.
        owed = select(Message.chat_id).where(Message.role == "user", Message.answered_at.is_(None))
        rows = await self.session.scalars(
            select(Conversation.chat_id)
            .where(
                Conversation.chat_id.in_(owed),
                Conversation.active,
                or_(Conversation.reply_lease_until.is_(None), Conversation.reply_lease_until < now),
            )
            .limit(limit)
        )
        return list(rows)

    async def forget(self, user_id: int) -> int:
        """Delete every row about a user; processed update ids keep no link to them."""
        chat_ids = list(await self.session.scalars(select(Conversation.chat_id).where(Conversation.user_id == user_id)))
        chats = [*chat_ids, user_id]
        await self.session.execute(
            update(ProcessedUpdate).where(ProcessedUpdate.chat_id.in_(chats)).values(chat_id=None)
        )
        await self.session.execute(delete(Outbox).where(Outbox.chat_id.in_(chats)))
        await self.session.execute(delete(DeadLetter).where(DeadLetter.chat_id.in_(chats)))
        result = await self.session.execute(delete(User).where(User.id == user_id))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def vars_of(record: TransitionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in TransitionRecord.__slots__}
