"""The webhook configuration registered with Telegram, so replicas register it once."""

from __future__ import annotations

from storage.database import Executor
from storage.sql import Statement

_LOCK = Statement("SELECT pg_advisory_xact_lock(hashtext('aifriend:webhook-registration'))")
_FINGERPRINT = Statement("SELECT fingerprint FROM webhook_registrations WHERE bot_id = :bot_id")
_RECORD = Statement("""
    INSERT INTO webhook_registrations (bot_id, url, fingerprint, registered_by)
    VALUES (:bot_id, :url, :fingerprint, :worker)
    ON CONFLICT (bot_id) DO UPDATE
       SET url = EXCLUDED.url, fingerprint = EXCLUDED.fingerprint, registered_by = EXCLUDED.registered_by,
           registered_at = now()
""")


class WebhookRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def lock(self) -> None:
        """Serialize registration across replicas until the transaction ends."""
        await self.executor.execute(_LOCK)

    async def fingerprint(self, bot_id: int) -> str | None:
        found: str | None = await self.executor.fetchval(_FINGERPRINT, bot_id=bot_id)
        return found

    async def record(self, bot_id: int, *, url: str, fingerprint: str, worker: str) -> None:
        await self.executor.execute(_RECORD, bot_id=bot_id, url=url, fingerprint=fingerprint, worker=worker)
