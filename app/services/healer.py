"""Chats a crashed worker left owed a reply: found by their expired leases, answered once.

Any process with a responder looks now and then (a maintenance job); taking the lease decides
which one answers a chat, so two processes that find it together never both reply.
"""

from __future__ import annotations

import structlog

from app.services.background import Background
from app.services.outbox import Outbox
from app.services.responder import Responder
from app.services.values import ReplyRules, utcnow
from storage.database import Database
from storage.leases import LeaseRepo

log = structlog.get_logger(__name__)

HEAL_CONCURRENCY = 32  # chats answered at once after a crash; the model server queues the rest


class Healer:
    def __init__(
        self,
        *,
        database: Database,
        responder: Responder,
        rules: ReplyRules,
        background: Background,
        concurrency: int = HEAL_CONCURRENCY,
    ) -> None:
        self.database = database
        self.responder = responder
        self.rules = rules
        self.background = background
        self.concurrency = concurrency
        self._healing: set[int] = set()

    async def heal(self, outbox: Outbox) -> int:
        """Start answering what crashed workers left owed, several chats at once; how many were started."""
        room = self.concurrency - len(self._healing)
        if room <= 0:
            return 0
        leases = LeaseRepo(self.database)
        started = 0
        for chat_id in await leases.owed(utcnow(), room):
            if chat_id in self._healing:
                continue
            if await leases.take(chat_id, self.rules.worker, utcnow() + self.rules.lease, utcnow()):
                log.info("reply_healing", chat_id=chat_id)
                self._healing.add(chat_id)
                self.background.spawn(self._heal_one(chat_id, outbox), chat_id=chat_id)
                started += 1
        return started

    async def _heal_one(self, chat_id: int, outbox: Outbox) -> None:
        try:
            await self.responder.respond(chat_id, outbox)
        finally:
            self._healing.discard(chat_id)
