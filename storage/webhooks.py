"""The webhook configuration registered with Telegram, so replicas register it once."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import WebhookRegistration

_REGISTRATION_LOCK = "aifriend:webhook-registration"


class WebhookRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self) -> None:
        """Serialize registration across replicas until the transaction ends."""
        await self.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _REGISTRATION_LOCK})

    async def fingerprint(self, bot_id: int) -> str | None:
        return await self.session.scalar(
            select(WebhookRegistration.fingerprint).where(WebhookRegistration.bot_id == bot_id)
        )

    async def record(self, bot_id: int, *, url: str, fingerprint: str, worker: str) -> None:
        values = {"url": url, "fingerprint": fingerprint, "registered_by": worker}
        await self.session.execute(
            insert(WebhookRegistration)
            .values(bot_id=bot_id, **values)
            .on_conflict_do_update(
                index_elements=[WebhookRegistration.bot_id], set_={**values, "registered_at": func.now()}
            )
        )
