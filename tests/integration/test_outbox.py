"""A reply queued already claimed (nothing of its chat ahead), through the real service and outbox:
it goes out without a claim of its own, never ahead of what was queued before it, and a sender
already running for the chat takes it on its next turn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.services.conversation import ConversationService
from app.services.delivery import SendOutcome
from storage.conversations import UserInfo
from storage.outbox import OutboxRepo, Outgoing, QueuedSend, SenderRepo
from tests.helpers import RecordingOutbox
from tests.postgres import fetch as rows

BEA = UserInfo(user_id=601, username="bea", first_name="Bea")


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The chats the senders claimed a head for (the real claim still runs)."""
    seen: list[int] = []
    claim_head = SenderRepo.claim_head

    async def counted(self: SenderRepo, chat_id: int, *args: object) -> QueuedSend | None:
        seen.append(chat_id)
        return await claim_head(self, chat_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SenderRepo, "claim_head", counted)
    return seen


async def test_a_reply_with_nothing_ahead_goes_out_without_a_claim_of_its_own(
    service: ConversationService, database_url: str, claims: list[int]
) -> None:
    outbox = RecordingOutbox(service.database)
    replies = await service.handle_text(601, BEA, "hello, anyone there?", outbox)
    assert [r.text for r in replies] == ["[emulated model] hello, anyone there?"]
    assert outbox.sent == [(601, "[emulated model] hello, anyone there?")]
    assert claims == [], "the reply was queued claimed: its sender made no claim"
    delivered = await rows(database_url, "SELECT delivered_at FROM messages WHERE role = 'assistant'")
    assert delivered[0]["delivered_at"] is not None
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0


async def test_a_reply_never_overtakes_what_the_chat_had_queued_before_it(
    service: ConversationService, claims: list[int]
) -> None:
    """A command's answer still waiting (here: queued, not yet sent) is the chat's head: the reply
    is queued unclaimed behind it and goes out second."""
    outbox = RecordingOutbox(service.database)
    await service.handle_text(601, BEA, "first", outbox)
    async with service.database.sessions() as session, session.begin():
        await OutboxRepo(session).enqueue(601, [Outgoing("sendMessage", {"chat_id": 601, "text": "your settings"})])
    await service.handle_text(601, BEA, "second", outbox)
    assert [text for _, text in outbox.sent] == [
        "[emulated model] first",
        "your settings",
        "[emulated model] second",
    ]
    assert claims, "behind another send, the reply's sender claimed the head"


class _Gate(RecordingOutbox):
    """Telegram holding the answer to one send until the test lets it go."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        deliver = self.recorder.deliver

        async def gated(send: QueuedSend) -> SendOutcome:
            if send.payload.get("text") == "held":
                self.held.set()
                await self.release.wait()
            return await deliver(send)

        self.recorder.deliver = gated  # type: ignore[method-assign]


async def test_a_claimed_send_handed_to_a_running_sender_goes_out_on_its_next_turn(
    service: ConversationService, database_url: str
) -> None:
    """The moment a sender of the chat is between its last send and its end, a reply may be queued
    claimed: that sender sends it next, instead of leaving it until the claim runs out (20 s)."""
    outbox = _Gate(service.database)
    async with service.database.sessions() as session, session.begin():
        await OutboxRepo(session).enqueue(601, [Outgoing("sendMessage", {"chat_id": 601, "text": "held"})])
    running = outbox.kick(601)
    await asyncio.wait_for(outbox.held.wait(), 5)
    async with service.database.raw() as connection:
        row = await connection.fetchrow(
            "INSERT INTO outbox (chat_id, method, payload, claimed_by, claimed_until, attempts)"
            " VALUES (601, 'sendMessage', $1::jsonb, 'test', now() + interval '20 seconds', 1)"
            " RETURNING id, created_at",
            '{"chat_id": 601, "text": "claimed"}',
        )
    claimed = QueuedSend(
        row["id"],
        601,
        None,
        True,
        "sendMessage",
        {"chat_id": 601, "text": "claimed"},
        1,
        row["created_at"] or datetime.now(UTC),
    )
    flushing = asyncio.create_task(outbox.flush(601, claimed=claimed))
    await asyncio.sleep(0.05)
    outbox.release.set()
    await asyncio.wait_for(asyncio.gather(running, flushing), 5)
    assert [text for _, text in outbox.sent] == ["held", "claimed"]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0


async def test_a_claim_that_may_have_run_out_is_not_sent_on(service: ConversationService, database_url: str) -> None:
    """A sender that got to a send queued claimed only after its claim could have run out (a long
    wait for a free slot) asks the database again; here another worker holds the row by then."""
    outbox = RecordingOutbox(service.database)
    outbox.claim_lease = timedelta(0)  # whatever it was given, it may have run out by the time it is sent
    async with service.database.raw() as connection:
        row = await connection.fetchrow(
            "INSERT INTO outbox (chat_id, method, payload, claimed_by, claimed_until, attempts)"
            " VALUES (601, 'sendMessage', $1::jsonb, 'other-worker', now() + interval '20 seconds', 2)"
            " RETURNING id, created_at",
            '{"chat_id": 601, "text": "late"}',
        )
    late = QueuedSend(row["id"], 601, None, True, "sendMessage", {"chat_id": 601, "text": "late"}, 1, row["created_at"])
    await asyncio.sleep(0.01)
    await outbox.flush(601, claimed=late)
    assert outbox.sent == [], "the other worker sends it; sending it here too would be twice"
    held = await rows(database_url, "SELECT claimed_by FROM outbox")
    assert [r["claimed_by"] for r in held] == ["other-worker"]


async def test_a_claimed_send_queued_while_its_sender_looks_for_more_goes_out_at_once(
    service: ConversationService, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load: a sender, asked to look once more, finds the chat's queue empty; meanwhile the
    next reply is queued claimed for it. Both asks used to fold into one, the sender stopped, and the
    reply waited for its claim to run out: 20 s (seen in bench_bot: 2 of 900 replies)."""
    outbox = _Gate(service.database)
    empty_claim, go_on = asyncio.Event(), asyncio.Event()
    claim_head = SenderRepo.claim_head

    async def paused_when_empty(self: SenderRepo, chat_id: int, *args: object) -> QueuedSend | None:
        found = await claim_head(self, chat_id, *args)  # type: ignore[arg-type]
        if found is None and not empty_claim.is_set():
            empty_claim.set()  # the claim found nothing; its answer is on its way back
            await go_on.wait()
        return found

    monkeypatch.setattr(SenderRepo, "claim_head", paused_when_empty)
    async with service.database.sessions() as session, session.begin():
        await OutboxRepo(session).enqueue(601, [Outgoing("sendMessage", {"chat_id": 601, "text": "held"})])
    first = asyncio.create_task(outbox.flush(601, expect=1))
    await asyncio.wait_for(outbox.held.wait(), 5)
    outbox.kick(601)  # something else of the chat: look once more after this send
    outbox.release.set()
    await asyncio.wait_for(empty_claim.wait(), 5)
    async with service.database.raw() as connection:
        row = await connection.fetchrow(
            "INSERT INTO outbox (chat_id, method, payload, claimed_by, claimed_until, attempts)"
            " VALUES (601, 'sendMessage', $1::jsonb, $2, now() + interval '20 seconds', 1)"
            " RETURNING id, created_at",
            '{"chat_id": 601, "text": "claimed"}',
            outbox.worker,
        )
    claimed = QueuedSend(
        row["id"], 601, None, True, "sendMessage", {"chat_id": 601, "text": "claimed"}, 1, row["created_at"]
    )
    second = asyncio.create_task(outbox.flush(601, expect=1, claimed=claimed))
    await asyncio.sleep(0.05)
    go_on.set()
    await asyncio.wait_for(asyncio.gather(first, second), 3)
    assert [text for _, text in outbox.sent] == ["held", "claimed"]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0
