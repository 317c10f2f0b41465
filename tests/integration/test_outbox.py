"""The outbox through the real service and senders: a chat's sends go out in the order they were
queued, and a delivery the database could not record at once is recorded later, never sent twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.services.friend import Friend
from storage.outbox import OutboxRepo, Outgoing, QueuedSend
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox
from tests.postgres import fetch as rows

BEA = UserInfo(user_id=601, username="bea", first_name="Bea")


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The chats the senders claimed a head for (the real claim still runs)."""
    seen: list[int] = []
    claim_head = OutboxRepo.claim_head

    async def counted(self: OutboxRepo, chat_id: int, *args: object) -> QueuedSend | None:
        seen.append(chat_id)
        return await claim_head(self, chat_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(OutboxRepo, "claim_head", counted)
    return seen


async def test_a_reply_with_nothing_ahead_goes_out_without_a_claim_of_its_own(
    service: Friend, database_url: str, claims: list[int]
) -> None:
    outbox = RecordingOutbox(service.database)
    replies = await service.handle_text(601, BEA, "hello, anyone there?", outbox)
    assert [r.text for r in replies] == ["[emulated model] hello, anyone there?"]
    assert outbox.sent == [(601, "[emulated model] hello, anyone there?")]
    assert claims == [], "the reply was queued claimed: its sender made no claim"
    delivered = await rows(database_url, "SELECT delivered_at FROM messages WHERE role = 'assistant'")
    assert delivered[0]["delivered_at"] is not None
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0


async def test_a_claim_that_may_have_run_out_is_not_sent_on(service: Friend, database_url: str) -> None:
    """A send queued claimed, reached only after its claim could have run out (a long wait for a
    free slot), is claimed again through the database; here another worker holds it by then."""
    outbox = RecordingOutbox(service.database)
    outbox.trust = 0.0  # whatever it was given, it may have run out by the time it is sent
    row = (
        await rows(
            database_url,
            "INSERT INTO outbox (chat_id, method, payload, claimed_by, claimed_until, attempts)"
            " VALUES (601, 'sendMessage', $1::jsonb, 'other-worker', now() + interval '20 seconds', 2)"
            " RETURNING id, created_at",
            '{"chat_id": 601, "text": "late"}',
        )
    )[0]
    late = QueuedSend(row["id"], 601, None, True, "sendMessage", {"chat_id": 601, "text": "late"}, 1, row["created_at"])
    await outbox.flush(601, claimed=late)
    assert outbox.sent == [], "the other worker sends it; sending it here too would be twice"
    held = await rows(database_url, "SELECT claimed_by FROM outbox")
    assert [r["claimed_by"] for r in held] == ["other-worker"]


async def test_a_claim_still_held_after_a_long_wait_is_kept_and_sent_once(
    service: Friend, database_url: str, claims: list[int]
) -> None:
    """The same late send, still claimed by this worker (its claim has not run out): the claim is
    extended and the message sent, at once, rather than left until the claim runs out."""
    outbox = RecordingOutbox(service.database)
    outbox.trust = 0.0
    row = (
        await rows(
            database_url,
            "INSERT INTO outbox (chat_id, method, payload, claimed_by, claimed_until, attempts)"
            " VALUES (601, 'sendMessage', $1::jsonb, 'test', now() + interval '20 seconds', 1)"
            " RETURNING id, created_at",
            '{"chat_id": 601, "text": "late"}',
        )
    )[0]
    late = QueuedSend(row["id"], 601, None, True, "sendMessage", {"chat_id": 601, "text": "late"}, 1, row["created_at"])
    await outbox.flush(601, claimed=late)
    assert outbox.sent == [(601, "late")]
    assert claims == [601], "after the send, the sender only looked whether more was queued"
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0


async def test_a_claimed_send_the_database_cannot_confirm_is_left_to_the_sweep(
    service: Friend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database gone while a late claimed send asks whether its claim is still alive: the reply
    path goes on (the reply is stored), and the send waits for its claim to run out and the sweep."""

    async def gone(*args: object) -> bool:
        from storage.errors import translate

        raise translate(ConnectionResetError("the database went away"))

    monkeypatch.setattr(OutboxRepo, "keep_claim", gone)
    outbox = RecordingOutbox(service.database)
    outbox.trust = 0.0
    late = QueuedSend(1, 601, None, True, "sendMessage", {"chat_id": 601, "text": "late"}, 1, datetime.now(UTC))
    await outbox.flush(601, claimed=late)
    assert outbox.sent == []


async def test_a_reply_never_overtakes_what_the_chat_had_queued_before_it(service: Friend, claims: list[int]) -> None:
    """A command's answer still waiting (here: queued, not yet sent) is the chat's head: the reply
    is queued behind it and goes out second."""
    outbox = RecordingOutbox(service.database)
    await service.handle_text(601, BEA, "first", outbox)
    await OutboxRepo(service.database).enqueue(
        601, [Outgoing("sendMessage", {"chat_id": 601, "text": "your settings"})]
    )
    await service.handle_text(601, BEA, "second", outbox)
    assert [text for _, text in outbox.sent] == [
        "[emulated model] first",
        "your settings",
        "[emulated model] second",
    ]
    assert claims, "behind another send, the reply's sender claimed the head"


async def test_replies_sent_while_recording_fails_are_recorded_later_and_sent_once(
    service: Friend, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The senders whose record failed write their delivery again (`delivery_not_recorded`), so no
    claim runs out on a message already sent."""
    sent = OutboxRepo.sent
    failures = [ConnectionResetError("the database went away")]

    async def flaky(self: OutboxRepo, send_id: int, telegram_message_id: int | None) -> None:
        if failures:
            from storage.errors import translate

            raise translate(failures.pop())
        await sent(self, send_id, telegram_message_id)

    monkeypatch.setattr(OutboxRepo, "sent", flaky)
    outbox = RecordingOutbox(service.database)
    users = [UserInfo(user_id=chat, username=f"u{chat}", first_name="U") for chat in range(731, 735)]
    await asyncio.gather(*(service.handle_text(u.user_id, u, f"hello from {u.user_id}", outbox) for u in users))
    assert sorted(outbox.sent) == [(u.user_id, f"[emulated model] hello from {u.user_id}") for u in users]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0
    undelivered = await rows(
        database_url, "SELECT count(*) FROM messages WHERE role = 'assistant' AND delivered_at IS NULL"
    )
    assert undelivered[0][0] == 0
