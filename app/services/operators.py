"""What operators and users read back: reports, the transition history, the /export document."""

from __future__ import annotations

from typing import Any

from storage.database import Database
from storage.export import export_user
from storage.reports import ConversationReport, StatsReport, conversation_report, stats_report


class OperatorReports:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def conversation(self, chat_id: int) -> ConversationReport | None:
        return await conversation_report(self.database, chat_id)

    async def transitions(self, chat_id: int) -> list[dict[str, Any]]:
        report = await conversation_report(self.database, chat_id, last=1000)
        return report.transitions if report else []

    async def stats(self) -> StatsReport:
        return await stats_report(self.database)

    async def export(self, user_id: int) -> dict[str, Any] | None:
        return await export_user(self.database, user_id)
