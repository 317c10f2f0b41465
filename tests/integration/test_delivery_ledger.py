"""Deliveries recorded together (`app/services/ledger.py`), against PostgreSQL: sends that Telegram
accepted at the same time are written down by one statement, each sender returns only once its
own delivery is committed, and a statement that fails sends nobody's message twice."""

from __future__ import annotations

import asyncio

import pytest

from app.services.conversation import ConversationService
from app.services.ledger import DeliveryLedger
from storage.conversations import UserInfo
from storage.outbox import SenderRepo
from tests.helpers import RecordingOutbox
from tests.postgres import fetch as rows


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many deliveries each recording statement carried (the real statement still runs)."""
    sizes: list[int] = []
    sent = SenderRepo.sent

    async def counted(self: SenderRepo, deliveries: list[tuple[int, int | None]]) -> None:
        sizes.append(len(deliveries))
        await sent(self, deliveries)

    monkeypatch.setattr(SenderRepo, "sent", counted)
    return sizes


async def _queued_replies(database_url: str, chats: range) -> list[int]:
    """One assistant message per chat and its outbox row; the rows' ids."""
    ids = []
    for chat in chats:
        row = (
            await rows(
                database_url,
                f"""WITH u AS (INSERT INTO users (id) VALUES ({chat})),
                     c AS (INSERT INTO conversations (chat_id, user_id, state) VALUES ({chat}, {chat}, 'icebreaker')),
                     m AS (INSERT INTO messages (chat_id, role, kind, text) VALUES ({chat}, 'assistant', 'reply', 'hi')
                           RETURNING id)
                INSERT INTO outbox (chat_id, message_id, last_piece, method, payload)
                SELECT {chat}, id, true, 'sendMessage', '{{"text": "hi"}}' FROM m RETURNING id""",
            )
        )[0]
        ids.append(row["id"])
    return ids


async def test_deliveries_that_arrive_together_are_committed_by_one_statement(
    service: ConversationService, database_url: str, statements: list[int]
) -> None:
    ids = await _queued_replies(database_url, range(701, 706))
    ledger = DeliveryLedger(service.database)
    await asyncio.gather(*(ledger.record(send_id, 9000 + n) for n, send_id in enumerate(ids)))
    assert statements == [5]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0
    delivered = await rows(
        database_url, "SELECT chat_id, telegram_message_id, delivered_at FROM messages ORDER BY chat_id"
    )
    assert [(r["chat_id"], r["telegram_message_id"]) for r in delivered] == [(701 + n, 9000 + n) for n in range(5)]
    assert all(r["delivered_at"] is not None for r in delivered)


async def test_a_delivery_that_comes_while_a_statement_is_on_its_way_goes_in_the_next(
    service: ConversationService, database_url: str, statements: list[int]
) -> None:
    first, *later = await _queued_replies(database_url, range(711, 715))
    ledger = DeliveryLedger(service.database)
    alone = asyncio.create_task(ledger.record(first, 1))
    await asyncio.sleep(0)  # its statement is on its way
    await asyncio.gather(*(ledger.record(send_id, 2) for send_id in later), alone)
    assert statements == [1, 3]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0


async def test_a_failed_statement_is_everyones_error_and_the_next_one_records(
    service: ConversationService, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _queued_replies(database_url, range(721, 724))
    sent = SenderRepo.sent
    failures = [ConnectionResetError("the database went away")]

    async def flaky(self: SenderRepo, deliveries: list[tuple[int, int | None]]) -> None:
        if failures:
            raise failures.pop()
        await sent(self, deliveries)

    monkeypatch.setattr(SenderRepo, "sent", flaky)
    ledger = DeliveryLedger(service.database)
    outcomes = await asyncio.gather(*(ledger.record(send_id, None) for send_id in ids[:2]), return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionResetError, ConnectionResetError]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 3, "nothing was written"
    await ledger.record(ids[2], None)
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 2


async def test_replies_sent_while_recording_fails_are_recorded_later_and_sent_once(
    service: ConversationService, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real outbox: the senders whose statement failed write their delivery on their
    own (`delivery_not_recorded`, then again), so no claim runs out on a message already sent."""
    sent = SenderRepo.sent
    failures = [ConnectionResetError("the database went away")]

    async def flaky(self: SenderRepo, deliveries: list[tuple[int, int | None]]) -> None:
        if failures:
            raise failures.pop()
        await sent(self, deliveries)

    monkeypatch.setattr(SenderRepo, "sent", flaky)
    outbox = RecordingOutbox(service.database)
    users = [UserInfo(user_id=chat, username=f"u{chat}", first_name="U") for chat in range(731, 735)]
    await asyncio.gather(*(service.handle_text(u.user_id, u, f"hello from {u.user_id}", outbox) for u in users))
    assert sorted(outbox.sent) == [(u.user_id, f"[emulated model] hello from {u.user_id}") for u in users]
    assert (await rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0
    undelivered = await rows(
        database_url, "SELECT count(*) FROM messages WHERE role = 'assistant' AND delivered_at IS NULL"
    )
    assert undelivered[0][0] == 0
