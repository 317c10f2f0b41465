"""Plans noted at the polite hour, in the user's zone, and only when FOLLOWUPS is on."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from app.emulators.tgi import TGIEmulator
from app.services.followups import FollowupRules
from app.services.values import utcnow
from scheduler.timing import QuietHours
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend
from tests.postgres import fetch


async def test_a_follow_up_due_in_the_users_night_waits_for_the_morning(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    zone = ZoneInfo("Asia/Tokyo")
    local_now = utcnow().astimezone(zone)
    quiet = QuietHours((local_now.hour + 1) % 24, (local_now.hour + 6) % 24)  # the hours after the plan
    friend = build_friend(db, tgi, followup_rules=FollowupRules(delay=timedelta(hours=2), quiet_hours=quiet))
    outbox = RecordingOutbox(db)
    try:
        await friend.handle_text(8301, UserInfo(8301), "hi", outbox)
        async with db.transaction() as tx:
            await ConversationRepo(tx).set_timezone(8301, "Asia/Tokyo")
        at = local_now + timedelta(minutes=30)
        day = "today" if at.date() == local_now.date() else "tomorrow"
        await friend.handle_text(8301, UserInfo(8301), f"my exam is {day} at {at:%H:%M}", outbox)
    finally:
        await friend.background.stop(0)
        await friend.model.close()
    rows = await fetch(database_url, "SELECT event_at, due_at FROM followups WHERE chat_id = 8301")
    event_at, due_at = rows[0]
    assert due_at.astimezone(zone).hour == quiet.end and due_at > event_at + timedelta(hours=2), (
        "two hours after the exam is in the user's night: the follow-up waits for the morning"
    )


async def test_with_followups_off_plans_are_not_noted_but_reminders_are(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    friend = build_friend(db, tgi, followup_rules=FollowupRules(enabled=False))
    outbox = RecordingOutbox(db)
    try:
        await friend.handle_text(8401, UserInfo(8401), "my interview is tomorrow at 10am", outbox)
        await friend.handle_text(8401, UserInfo(8401), "remind me tomorrow at 9 to iron my shirt", outbox)
    finally:
        await friend.background.stop(0)
        await friend.model.close()
    rows = await fetch(database_url, "SELECT kind FROM followups WHERE chat_id = 8401")
    assert [row[0] for row in rows] == ["reminder"]
    assert any("iron my shirt" in text and text.startswith("Okay, I'll remind you") for _, text in outbox.sent)
