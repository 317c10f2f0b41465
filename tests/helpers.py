"""Small test doubles that are not fakes of our own code: a transport that records, behind the real outbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from app.emulators.tgi import TGIEmulator
from app.persona import load_persona
from app.services.delivery import DeliveryQueue
from app.services.friend import Friend
from app.services.gate import AccessRules
from app.services.outbox import SendOutcome
from app.services.values import ReplyRules
from llm.sentiment import VaderScorer
from llm.tgi import TGIChatModel
from llm.types import ChatModel
from scheduler.timing import CheckinPolicy
from storage.database import Database
from storage.outbox import QueuedSend


class _Server(Protocol):
    async def start(self) -> object: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


@contextlib.asynccontextmanager
async def serving(emulator: S) -> AsyncIterator[S]:
    """An emulator listening on loopback for the block, stopped after it."""
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def build_friend(
    database: Database,
    tgi: TGIEmulator | None = None,
    *,
    model: ChatModel | None = None,
    worker: str = "local",
    policy: CheckinPolicy | None = None,
    debounce: timedelta = timedelta(0),
    lease: timedelta = timedelta(seconds=15),
    recall: int = 8,
    access: AccessRules | None = None,
    **build: Any,
) -> Friend:
    """The services as the wiring builds them (with no debounce unless asked): on the TGI emulator,
    or on `model` (another friend's, so it is closed once)."""
    assert model is not None or tgi is not None
    return Friend.build(
        database=database,
        model=model or TGIChatModel(tgi.url, backoff=0.01),
        scorer=VaderScorer(),  # type: ignore[union-attr]
        persona=load_persona(),
        rules=ReplyRules(worker=worker, debounce=debounce, lease=lease, recall=recall, access=access or AccessRules()),
        policy=policy,
        **build,
    )


@dataclass
class RecordingTransport:
    """Where Telegram would be: keeps what was sent, in order; refuses blocked chats with a 403."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    typing_shown: int = 0

    async def deliver(self, send: QueuedSend) -> SendOutcome:
        if send.chat_id in self.blocked:
            return SendOutcome("blocked", error="403: Forbidden: bot was blocked by the user")
        self.sent.append((send.chat_id, str(send.payload.get("text") or send.payload.get("caption") or "")))
        return SendOutcome("sent", telegram_message_id=len(self.sent))

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        self.typing_shown += 1
        yield


class RecordingOutbox(DeliveryQueue):
    """The real outbox (queue rows in PostgreSQL, claims, retries) in front of a recording transport."""

    def __init__(self, database: Database, *, blocked: Iterable[int] = (), worker: str = "test") -> None:
        super().__init__(database, RecordingTransport(blocked=set(blocked)), worker=worker)
        self.recorder = self.transport
        assert isinstance(self.recorder, RecordingTransport)

    @property
    def sent(self) -> list[tuple[int, str]]:
        return self.recorder.sent

    @property
    def blocked(self) -> set[int]:
        return self.recorder.blocked

    @property
    def typing_shown(self) -> int:
        return self.recorder.typing_shown
