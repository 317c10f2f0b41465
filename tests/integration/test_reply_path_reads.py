"""Chats read together (`ReplyPathRepo.read_many`, gathered by `NaturalBatch`), against PostgreSQL:
each chat gets its own state in one statement, and each stays an index lookup however many
conversations there are."""

from __future__ import annotations

import asyncio

import pytest

from app.services.conversation import ConversationService
from storage.conversations import UserInfo
from storage.reply_path import _READ, ReadWanted, ReplyPathRepo
from tests.helpers import RecordingOutbox


async def _chat(service: ConversationService, chat: int, *lines: str) -> None:
    outbox = RecordingOutbox(service.database)
    user = UserInfo(user_id=chat, username=f"u{chat}", first_name="U", language_code="en")
    for line in lines:
        await service.handle_text(chat, user, line, outbox)


async def test_several_chats_are_read_in_one_statement_each_with_its_own_state(service: ConversationService) -> None:
    await _chat(service, 801, "my sister Lena plays the cello", "we talked about the weather")
    await _chat(service, 802, "I am learning to bake sourdough bread")
    async with service.database.raw() as connection:
        states = await ReplyPathRepo(connection).read_many(
            [
                ReadWanted(801, "how is Lena and her cello?", 8),
                ReadWanted(999, "nobody", 8),
                ReadWanted(802, "bread again", 8),
                ReadWanted(801, None, 0),
            ],
            default_tz="UTC",
            window=20,
        )
    first, unknown, second, again = states
    assert unknown is None
    assert first is not None and second is not None and again is not None
    assert first.conversation.chat_id == again.conversation.chat_id == 801
    assert second.conversation.chat_id == 802
    assert [m.text for m in first.recent if m.role == "user"] == [
        "my sister Lena plays the cello",
        "we talked about the weather",
    ]
    assert [m.text for m in second.recent if m.role == "user"] == ["I am learning to bake sourdough bread"]
    assert first.recent == again.recent
    assert again.recalled == [], "no recall asked for this one"


async def test_reads_that_arrive_together_share_a_statement(
    service: ConversationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    for chat in range(811, 816):
        await _chat(service, chat, f"hello from {chat}")
    sizes: list[int] = []
    read_many = ReplyPathRepo.read_many

    async def counted(self: ReplyPathRepo, wanted: list[ReadWanted], **options: object) -> list[object]:
        sizes.append(len(wanted))
        return await read_many(self, wanted, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(ReplyPathRepo, "read_many", counted)
    contexts = await asyncio.gather(*(service._context(chat) for chat in range(811, 816)))
    assert sizes == [5]
    assert all(context is not None for context in contexts)
    assert [context.conversation.chat_id for context in contexts if context] == list(range(811, 816))


async def test_one_chats_read_is_an_index_lookup_even_in_the_generic_plan(service: ConversationService) -> None:
    """The plan PostgreSQL keeps for the prepared statement (a generic one: it knows neither the
    chats nor how many) must not scan every conversation."""
    async with service.database.raw() as connection:
        await connection.execute(
            "INSERT INTO users (id) SELECT g FROM generate_series(100000, 120000) AS g;"
            "INSERT INTO conversations (chat_id, user_id, state) "
            "SELECT g, g, 'icebreaker' FROM generate_series(100000, 120000) AS g;"
            "ANALYZE conversations; ANALYZE users;"
            f"PREPARE read_plan(bigint[], text, integer, integer, text[], integer[]) AS {_READ};"
            "SET plan_cache_mode = force_generic_plan"
        )
        plan = "\n".join(
            row[0]
            for row in await connection.fetch("EXPLAIN EXECUTE read_plan('{100123}', 'UTC', 20, 3, '{hello}', '{8}')")
        )
        await connection.execute("DEALLOCATE read_plan; RESET plan_cache_mode")
    assert "Seq Scan on conversations" not in plan, plan
    assert "Index Scan using pk_conversations on conversations" in plan, plan


async def test_the_reply_paths_statements_are_planned_once_per_connection(service: ConversationService) -> None:
    """Left to choose, PostgreSQL planned a one-chat read afresh on every reply (its estimate for one
    chat beat the kept plan's): a millisecond of server CPU each time. The pool's connections keep
    one plan per statement, whatever the chats and messages are."""
    await _chat(service, 821, "my sister Lena plays the cello", "we talked about the weather")
    async with service.database.raw() as connection:
        repo = ReplyPathRepo(connection)
        for n in range(8):
            state = await repo.read(821, default_tz="UTC", window=2, query=f"Lena and the cello, take {n}")
            assert state is not None and state.recalled, "recall still finds the older line"
        plans = await connection.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", _READ
        )
    assert plans is not None, "the read is a prepared statement on the connection"
    assert plans["custom_plans"] == 0, dict(plans)
    assert plans["generic_plans"] >= 8, dict(plans)
