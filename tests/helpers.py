"""Small test doubles that are not fakes of our own code: an outbox that records."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class RecordingOutbox:
    """Where the terminal or Telegram would be: keeps what was sent, in order."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    typing_shown: int = 0

    async def send(self, chat_id: int, text: str) -> int | None:
        from app.services.outbox import ChatBlockedError

        if chat_id in self.blocked:
            raise ChatBlockedError(chat_id)
        self.sent.append((chat_id, text))
        return len(self.sent)

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        self.typing_shown += 1
        yield
