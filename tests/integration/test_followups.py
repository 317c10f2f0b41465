"""Plans and reminders: noted at the polite hour, in the user's zone, only when FOLLOWUPS is on, once
per message, and by whichever process answers the message (a crash after storing it loses none)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.emulators.tgi import TGIEmulator
from app.services.followups import FollowupRules
from app.services.friend import Friend
from app.services.gate import AccessRules
from app.services.values import context_of, utcnow
from scheduler.timing import QuietHours
from storage.conversations import ConversationRepo
from storage.database import Database
from storage.reply_path import ReplyPathRepo
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend
from tests.postgres import fetch


@asynccontextmanager
async def _friend(db: Database, tgi: TGIEmulator, **build: Any) -> AsyncIterator[Friend]:
    friend = build_friend(db, tgi, **build)
    try:
        yield friend
    finally:
        await friend.background.stop(0)
        await friend.model.close()


async def _healed(friend: Friend, outbox: RecordingOutbox) -> None:
    """The healer's turn, as the bot's maintenance job runs it: it takes the chat and answers it."""
    assert await friend.healer.heal(outbox) == 1
    await friend.background.drain()


async def test_a_follow_up_due_in_the_users_night_waits_for_the_morning(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    zone = ZoneInfo("Asia/Tokyo")
    local_now = utcnow().astimezone(zone)
    quiet = QuietHours((local_now.hour + 1) % 24, (local_now.hour + 6) % 24)  # the hours after the plan
    async with _friend(db, tgi, followup_rules=FollowupRules(delay=timedelta(hours=2), quiet_hours=quiet)) as friend:
        outbox = RecordingOutbox(db)
        await friend.handle_text(8301, UserInfo(8301), "hi", outbox)
        async with db.transaction() as tx:
            await ConversationRepo(tx).set_timezone(8301, "Asia/Tokyo")
        at = local_now + timedelta(minutes=30)
        day = "today" if at.date() == local_now.date() else "tomorrow"
        await friend.handle_text(8301, UserInfo(8301), f"my exam is {day} at {at:%H:%M}", outbox)
    rows = await fetch(database_url, "SELECT event_at, due_at FROM followups WHERE chat_id = 8301")
    event_at, due_at = rows[0]
    assert due_at.astimezone(zone).hour == quiet.end and due_at > event_at + timedelta(hours=2), (
        "two hours after the exam is in the user's night: the follow-up waits for the morning"
    )


async def test_with_followups_off_plans_are_not_noted_but_reminders_are(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    async with _friend(db, tgi, followup_rules=FollowupRules(enabled=False)) as friend:
        outbox = RecordingOutbox(db)
        await friend.handle_text(8401, UserInfo(8401), "my interview is tomorrow at 10am", outbox)
        await friend.handle_text(8401, UserInfo(8401), "remind me tomorrow at 9 to iron my shirt", outbox)
    rows = await fetch(database_url, "SELECT kind FROM followups WHERE chat_id = 8401")
    assert [row[0] for row in rows] == ["reminder"]
    assert any("iron my shirt" in text and text.startswith("Okay, I'll remind you") for _, text in outbox.sent)


async def test_a_reminder_stored_by_a_process_that_died_at_once_is_kept_by_the_one_that_answers_it(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    """A process stored "remind me ..." and died before doing anything else with it. The healer
    answers the message after its lease ends (ten minutes later, here) and keeps the reminder,
    counted from when the user wrote it: confirmed once, before the reply."""
    chat, user = 8501, UserInfo(8501, language_code="en")
    async with _friend(db, tgi) as friend:
        outbox = RecordingOutbox(db)
        await friend.handle_text(chat, user, "hi", outbox)
        received = await friend.receive(chat, user, "remind me in 2 hours to call mom")  # ...and the process dies
        assert received.responder and received.message_id is not None
        assert await fetch(database_url, "SELECT id FROM followups WHERE chat_id = $1", chat) == []
        await fetch(
            database_url,
            "UPDATE conversations SET reply_lease_until = now() - interval '1 second' WHERE chat_id = $1",
            chat,
        )
        written = await fetch(  # and ten minutes passed before anyone healed it
            database_url,
            "UPDATE messages SET created_at = created_at - interval '10 minutes' WHERE id = $1 RETURNING created_at",
            received.message_id,
        )
        await _healed(friend, outbox)
    rows = await fetch(database_url, "SELECT kind, what, event_at, message_id FROM followups WHERE chat_id = $1", chat)
    assert [(r["kind"], r["what"], r["message_id"]) for r in rows] == [("reminder", "call mom", received.message_id)]
    delay = rows[0]["event_at"] - written[0][0]
    assert timedelta(hours=2) - timedelta(seconds=1) < delay <= timedelta(hours=2), "two hours from when it was said"
    texts = [text for sent_to, text in outbox.sent if sent_to == chat]
    assert texts[1].startswith("Okay, I'll remind you") and "call mom" in texts[1], texts
    assert len(texts) == 3 and texts[2].startswith("[emulated model]"), "the confirmation, then the reply"


async def test_a_message_read_twice_keeps_one_reminder_and_one_confirmation(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    """Two rounds may read one owed message (a round that lost its lease; two processes healing)."""
    chat, user = 8502, UserInfo(8502, language_code="en")
    async with _friend(db, tgi) as friend:
        outbox = RecordingOutbox(db)
        await friend.handle_text(chat, user, "hi", outbox)
        await friend.receive(chat, user, "remind me tomorrow at 9 to call mom")
        state = await ReplyPathRepo(db).read(chat, default_tz="UTC", window=20)
        assert state is not None
        context = context_of(state, friend.rules)
        await asyncio.gather(*(friend.followups.note_owed(context, outbox) for _ in range(3)))
        await friend.followups.note_owed(context, outbox)
        await outbox.flush(chat)
    assert len(await fetch(database_url, "SELECT id FROM followups WHERE chat_id = $1", chat)) == 1
    confirmations = [text for _, text in outbox.sent if text.startswith("Okay, I'll remind you")]
    assert len(confirmations) == 1, outbox.sent


async def test_a_stranger_waiting_to_be_let_in_gets_no_reminder_until_they_are(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    """With ACCESS=approval a stranger's messages wait for an operator; "remind me ..." is not
    confirmed while they wait (they were told they must), and is kept once they are let in."""
    chat, user = 8503, UserInfo(8503, language_code="en")
    async with _friend(db, tgi, access=AccessRules(mode="approval", admins=frozenset({1}))) as friend:
        outbox = RecordingOutbox(db)
        await friend.handle_text(chat, user, "remind me tomorrow at 9 to call mom", outbox)
        await outbox.flush(chat)
        waiting = [text for sent_to, text in outbox.sent if sent_to == chat]
        assert await fetch(database_url, "SELECT id FROM followups WHERE chat_id = $1", chat) == []
        assert not any(text.startswith("Okay, I'll remind you") for text in waiting), waiting
        async with db.transaction() as tx:
            await friend.access.decide(tx, chat, "approved", by_user_id=1)
        await _healed(friend, outbox)
    rows = await fetch(database_url, "SELECT kind, what FROM followups WHERE chat_id = $1", chat)
    assert [tuple(row) for row in rows] == [("reminder", "call mom")]
    after = [text for sent_to, text in outbox.sent if sent_to == chat][len(waiting) :]
    assert after[0].startswith("Okay, I'll remind you") and after[1].startswith("[emulated model]"), after
