"""The reply path's read (`ReplyPathRepo.read`), against PostgreSQL: each chat gets its own state in
one statement, and it stays an index lookup, planned once per connection, however many
conversations there are."""

from __future__ import annotations

from app.services.friend import Friend
from app.services.values import context_of
from storage.database import connect
from storage.reply_path import _READ, ReplyPathRepo
from storage.rows import UserInfo
from storage.sql import Statement
from storage.voice import NewVoiceNote, VoiceNoteRepo
from tests.helpers import RecordingOutbox

_TYPES = {
    "chat_id": "bigint",
    "default_tz": "text",
    "window": "integer",
    "days": "integer",
    "query": "text",
    "recall": "integer",
    "replies_limit": "integer",
    "tokens_limit": "bigint",
}


async def _chat(service: Friend, chat: int, *lines: str) -> None:
    outbox = RecordingOutbox(service.database)
    user = UserInfo(user_id=chat, username=f"u{chat}", first_name="U", language_code="en")
    for line in lines:
        await service.handle_text(chat, user, line, outbox)


async def test_each_chat_is_read_with_its_own_state_in_one_statement(service: Friend) -> None:
    await _chat(service, 801, "my sister Lena plays the cello", "we talked about the weather")
    await _chat(service, 802, "I am learning to bake sourdough bread")
    repo = ReplyPathRepo(service.database)
    first = await repo.read(801, default_tz="UTC", window=20, query="how is Lena and her cello?", recall=8)
    unknown = await repo.read(999, default_tz="UTC", window=20, query="nobody", recall=8)
    second = await repo.read(802, default_tz="UTC", window=20, query="bread again", recall=8)
    again = await repo.read(801, default_tz="UTC", window=20, query=None, recall=0)
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


async def test_a_voice_notes_transcript_is_read_either_as_owed_or_as_still_unheard(service: Friend) -> None:
    """A text sent right after a voice note waits for the note's transcript: the read says so, and
    once the transcript is stored, it is among what is owed in the same read (one snapshot), so the
    reply never answers the text alone while the transcript slips in beside it."""
    chat = 803
    user = UserInfo(user_id=chat, username="u803", first_name="U", language_code="en")
    await _chat(service, chat, "hello there")
    await VoiceNoteRepo(service.database).keep(NewVoiceNote(chat, 10, "voice", "file-10", 4, 1000))
    await service.receive(chat, user, "did you get that?", telegram_message_id=11)
    repo, rules = ReplyPathRepo(service.database), service.rules

    waiting = await repo.read(chat, default_tz="UTC", window=20)
    assert waiting is not None and waiting.first_unheard_voice == 10
    assert context_of(waiting, rules).behind_voice, "the text came after the note: wait for it"

    await service.receive(chat, user, "we got a puppy", telegram_message_id=10, kind="voice")
    heard = await repo.read(chat, default_tz="UTC", window=20)
    assert heard is not None and heard.first_unheard_voice is None
    assert not context_of(heard, rules).behind_voice
    assert sorted((m.telegram_message_id, m.kind) for m in heard.pending) == [(10, "voice"), (11, "text")]


async def test_a_text_sent_before_a_voice_note_does_not_wait_for_it(service: Friend) -> None:
    chat = 804
    user = UserInfo(user_id=chat, username="u804", first_name="U", language_code="en")
    await _chat(service, chat, "hello there")
    await service.receive(chat, user, "listen to this", telegram_message_id=20)
    await VoiceNoteRepo(service.database).keep(NewVoiceNote(chat, 21, "voice", "file-21", 4, 1000))
    state = await ReplyPathRepo(service.database).read(chat, default_tz="UTC", window=20)
    assert state is not None and state.first_unheard_voice == 21
    assert not context_of(state, service.rules).behind_voice


async def test_one_chats_read_is_an_index_lookup_even_in_the_generic_plan(service: Friend, database_url: str) -> None:
    """The plan PostgreSQL keeps for the prepared statement (a generic one: it knows no chat) must
    not scan every conversation."""
    types = ", ".join(_TYPES[name] for name in _READ.names)
    values = {
        "chat_id": "100123",
        "default_tz": "'UTC'",
        "window": "20",
        "days": "3",
        "query": "'hello'",
        "recall": "8",
        "replies_limit": "20",
        "tokens_limit": "0",
    }
    arguments = ", ".join(values[name] for name in _READ.names)
    database = await connect(database_url, pool_size=1)
    try:
        async with database.transaction() as tx:
            for setup in (
                "INSERT INTO users (id) SELECT g FROM generate_series(100000, 120000) AS g",
                "INSERT INTO conversations (chat_id, user_id, state) "
                "SELECT g, g, 'icebreaker' FROM generate_series(100000, 120000) AS g",
                "ANALYZE conversations",
                "ANALYZE users",
                f"PREPARE read_plan({types}) AS {_READ.sql}",
                "SET LOCAL plan_cache_mode = force_generic_plan",
            ):
                await tx.execute(Statement(setup))
            plan = "\n".join(row[0] for row in await tx.fetch(Statement(f"EXPLAIN EXECUTE read_plan({arguments})")))
            await tx.execute(Statement("DEALLOCATE read_plan"))
    finally:
        await database.close()
    assert "Seq Scan on conversations" not in plan, plan
    assert "Index Scan using pk_conversations on conversations" in plan, plan


async def test_the_reply_paths_statements_are_planned_once_per_connection(service: Friend, database_url: str) -> None:
    """Left to choose, PostgreSQL planned a one-chat read afresh on every reply (its estimate for one
    chat beat the kept plan's): a millisecond of server CPU each time. The pool's connections keep
    one plan per statement, whatever the chats and messages are."""
    await _chat(service, 821, "my sister Lena plays the cello", "we talked about the weather")
    database = await connect(database_url, pool_size=1)  # one connection: the one the reads were prepared on
    try:
        # a long chat, as far as recall's rarity is concerned: "Lena" and "cello" in one of 200 messages
        await database.execute(Statement("UPDATE conversations SET user_messages = 200 WHERE chat_id = 821"))
        repo = ReplyPathRepo(database)
        for n in range(8):
            state = await repo.read(821, default_tz="UTC", window=2, query=f"Lena and the cello, take {n}")
            assert state is not None and state.recalled, "recall still finds the older line"
        plans = await database.fetchrow(
            Statement("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = :sql"),
            sql=_READ.sql,
        )
    finally:
        await database.close()
    assert plans is not None, "the read is a prepared statement on the connection"
    assert plans["custom_plans"] == 0, dict(plans)
    assert plans["generic_plans"] >= 8, dict(plans)
