"""The conversation engine through the real service, a real PostgreSQL and the TGI emulator."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from app.emulators.tgi import TGIEmulator
from app.prompt import Memory
from app.serve import UPDATE_IDS_KEPT
from app.services.delivery import DeliveryQueue
from app.services.drafts import DraftOutcome
from app.services.friend import Friend
from app.services.outbox import SendOutcome
from app.services.values import ReplyContext, utcnow
from storage.conversations import ConversationRepo
from storage.messages import MessageRepo
from storage.outbox import QueuedSend
from storage.reply_path import ReplyPathRepo
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, RecordingTransport, build_friend
from tests.postgres import fetch as _rows
from tests.postgres import plain_dsn
from tests.waiting import until

ANN = UserInfo(user_id=501, username="ann", first_name="Ann")
CALM_LINES = [
    "I went to the market this morning",
    "We talked about the weather",
    "The bus was on time",
    "I read a chapter of my book",
    "My sister called me",
    "I cooked pasta for dinner",
]


async def _say(service: Friend, outbox: RecordingOutbox, text: str, chat: int = 501) -> list[str]:
    replies = await service.handle_text(chat, UserInfo(user_id=chat, username="ann"), text, outbox)
    return [r.text for r in replies]


async def test_arc_warms_at_ten_and_becomes_close_at_thirty(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    outbox = RecordingOutbox(service.database)
    persona = service.persona
    for number in range(1, 31):
        replies = await _say(service, outbox, f"{CALM_LINES[number % len(CALM_LINES)]} ({number})")
        assert len(replies) == 1
        request = tgi.chat_requests()[-1]
        system, newest = request["messages"][0]["content"], request["messages"][-1]["content"]
        if number == 9:
            assert system.startswith(persona.stages.icebreaker.system) and "<stage" not in newest
            assert request["temperature"] == persona.stages.icebreaker.temperature
        if number == 10:
            # The system prompt stays (a prefix cache reuses it); the change is a note with the message.
            assert system.startswith(persona.stages.icebreaker.system)
            assert newest.startswith('<stage name="warming">'), "the reply to message 10 is already warm"
            assert "You are getting to know each other." in newest
            assert request["temperature"] == persona.stages.warming.temperature
        if number == 30:
            assert newest.startswith('<stage name="close">') and "You know them well" in newest
            assert request["temperature"] == persona.stages.close.temperature
    log = await _rows(
        database_url,
        "SELECT from_state, to_state, trigger, user_messages FROM state_transition_log WHERE chat_id = 501 ORDER BY id",
    )
    assert [tuple(r) for r in log] == [
        (None, "icebreaker", "start", 0),
        ("icebreaker", "warming", "count", 10),
        ("warming", "close", "count", 30),
    ]
    overview = (await _rows(database_url, "SELECT * FROM conversation_overview WHERE chat_id = 501"))[0]
    assert (overview["state"], overview["user_messages"], overview["bot_messages"]) == ("close", 30, 30)
    assert len(outbox.sent) == 30


async def test_a_bad_day_enters_repair_and_recovers(service: Friend, tgi: TGIEmulator, database_url: str) -> None:
    outbox = RecordingOutbox(service.database)
    for line in CALM_LINES[:3]:
        await _say(service, outbox, line)
    await _say(service, outbox, "I had an awful, terrible day and I hate everything")
    await _say(service, outbox, "Thank you, that is wonderful, I love talking to you!")
    prompts = [request["messages"] for request in tgi.chat_requests()]
    assert len(prompts) == 5
    for earlier, later in itertools.pairwise(prompts):
        assert later[: len(earlier)] == earlier, "each prompt starts with the whole previous one"
    assert (
        prompts[3][-1]["content"].startswith('<stage name="repair">\n')
        and "They seem upset." in prompts[3][-1]["content"]
    )
    assert prompts[4][-1]["content"].startswith('<stage name="icebreaker">\n')
    log = await _rows(
        database_url,
        "SELECT from_state, to_state, trigger, sentiment_negative, sentiment_positive FROM state_transition_log WHERE chat_id = 501 ORDER BY id",
    )
    assert [(r["from_state"], r["to_state"], r["trigger"]) for r in log][1:] == [
        ("icebreaker", "repair", "negative"),
        ("repair", "icebreaker", "recovered"),
    ]
    assert log[1]["sentiment_negative"] > 0.3 and log[2]["sentiment_positive"] > 0.5


async def test_crisis_uses_the_safety_prompt(service: Friend, tgi: TGIEmulator, database_url: str) -> None:
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "Hello there, nice to meet you")
    await _say(service, outbox, "Honestly I feel fine but sometimes I want to kill myself")
    request = tgi.chat_requests()[-1]
    system = request["messages"][0]["content"]
    assert system.startswith(service.persona.prompts.safety) and "988" in system
    log = await _rows(
        database_url, "SELECT to_state, trigger FROM state_transition_log WHERE chat_id = 501 ORDER BY id DESC LIMIT 1"
    )
    assert tuple(log[0]) == ("repair", "crisis")


async def test_clear_resets_to_icebreaker_with_fresh_history(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    outbox = RecordingOutbox(service.database)
    for number in range(12):
        await _say(service, outbox, f"Remember the blue kite {number}")
    async with service.commands.handling(501, ANN) as unit:
        assert unit is not None
        stage = await service.commands.reset(unit)
    assert stage.value == "icebreaker"
    await _say(service, outbox, "Hi again")
    prompt = tgi.chat_requests()[-1]["messages"]
    assert "blue kite" not in " ".join(m["content"] for m in prompt[1:])
    assert prompt[0]["content"].startswith(service.persona.stages.icebreaker.system)
    log = await _rows(
        database_url,
        "SELECT from_state, to_state, trigger FROM state_transition_log WHERE chat_id = 501 AND trigger = 'reset'",
    )
    assert [tuple(r) for r in log] == [("warming", "icebreaker", "reset")]


async def test_fourteen_days_of_silence_cool_close_to_warming(service: Friend, database_url: str) -> None:
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "hello")
    connection = await asyncpg.connect(plain_dsn(database_url))
    await connection.execute(
        "UPDATE conversations SET state = 'close', stage_messages = 40, last_user_message_at = now() - interval '13 days' WHERE chat_id = 501"
    )
    assert await service.cooldown.cool_down(501) is False
    await connection.execute(
        "UPDATE conversations SET last_user_message_at = now() - interval '15 days' WHERE chat_id = 501"
    )
    await connection.close()
    assert await service.cooldown.cool_down(501) is True
    log = await _rows(
        database_url,
        "SELECT from_state, to_state, trigger FROM state_transition_log WHERE chat_id = 501 ORDER BY id DESC LIMIT 1",
    )
    assert tuple(log[0]) == ("close", "warming", "cooldown")


async def test_model_down_gets_the_fallback_line_and_the_message_is_kept(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    tgi.fail_next(503, "overloaded", times=3)
    outbox = RecordingOutbox(service.database)
    replies = await _say(service, outbox, "are you there?")
    assert replies == [service.persona.fallback]
    rows = await _rows(database_url, "SELECT role, kind FROM message_log WHERE chat_id = 501 ORDER BY id")
    assert [tuple(r) for r in rows] == [("user", "text"), ("assistant", "fallback")]
    overview = (await _rows(database_url, "SELECT user_messages FROM conversation_overview"))[0]
    assert overview["user_messages"] == 1


async def test_a_transient_overload_is_retried(service: Friend, tgi: TGIEmulator) -> None:
    tgi.fail_next(429, "overloaded", times=2)
    replies = await _say(service, RecordingOutbox(service.database), "hello after a busy moment")
    assert replies[0].startswith("[emulated model]")


async def test_messages_arriving_together_are_all_answered_in_order(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    tgi.latency = 0.2
    outbox = RecordingOutbox(service.database)
    results = await asyncio.gather(*(_say(service, outbox, f"part {n}") for n in range(4)))
    replies = [text for result in results for text in result]
    assert 1 <= len(replies) < 4, "messages that came during a reply are answered together"
    pending = await _rows(database_url, "SELECT count(*) FROM messages WHERE role = 'user' AND answered_at IS NULL")
    assert pending[0][0] == 0
    users = await _rows(database_url, "SELECT user_messages FROM conversations WHERE chat_id = 501")
    assert users[0][0] == 4
    answered = " ".join(body["messages"][-1]["content"] for body in tgi.chat_requests())
    assert all(f"part {n}" in answered for n in range(4))
    assert all(body["messages"][-1]["role"] == "user" for body in tgi.chat_requests())


async def test_a_long_conversation_stays_in_budget_and_remembers_early_facts(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    tgi.max_input_tokens, tgi.max_total_tokens = 767, 768
    outbox = RecordingOutbox(service.database)
    for number in range(1, 501):
        text = (
            "My dog is called Biscuit"
            if number == 3
            else f"{CALM_LINES[number % len(CALM_LINES)]} today, number {number}"
        )
        replies = await _say(service, outbox, text)
        assert len(replies) == 1
        await service.background.drain()
    assert tgi.rejected == 0
    sizes = []
    from app.emulators.tgi import template, tokenize

    for body in tgi.chat_requests():
        sizes.append(len(tokenize(template(body["messages"]))))
        assert sizes[-1] + body["max_tokens"] <= tgi.max_total_tokens
    assert max(sizes[-100:]) <= max(sizes[:100]) * 2, "the prompt stays flat"
    summary = (await _rows(database_url, "SELECT memory_summary FROM conversation_overview WHERE chat_id = 501"))[0][0]
    assert summary
    replies = [
        b for b in tgi.chat_requests() if not b["messages"][0]["content"].startswith(service.persona.prompts.summary)
    ]
    last_prompt = replies[-1]["messages"]
    assert last_prompt[-1]["content"].endswith("number 500")
    assert "Biscuit" in last_prompt[0]["content"], "message 3's fact reaches message 500 through the summary"
    assert "Biscuit" not in " ".join(m["content"] for m in last_prompt[1:])


async def test_a_new_day_starts_with_yesterdays_summary(service: Friend, tgi: TGIEmulator, database_url: str) -> None:
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "I adopted a cat named Pepper")
    connection = await asyncpg.connect(plain_dsn(database_url))
    await connection.execute("UPDATE messages SET created_at = created_at - interval '1 day' WHERE chat_id = 501")
    await connection.execute(
        "UPDATE conversations SET last_user_message_at = last_user_message_at - interval '1 day' WHERE chat_id = 501"
    )
    await connection.close()
    await _say(service, outbox, "Good morning")
    await service.background.drain()
    days = await _rows(database_url, "SELECT day, text FROM daily_summaries WHERE chat_id = 501")
    assert len(days) == 1 and "Pepper" in days[0]["text"]
    await _say(service, outbox, "What do you remember?")
    system = tgi.chat_requests()[-1]["messages"][0]["content"]
    assert service.persona.prompts.memory_heading in system and "Pepper" in system


async def test_a_redelivered_message_is_stored_and_answered_once(service: Friend, database_url: str) -> None:
    outbox = RecordingOutbox(service.database)
    first = await service.handle_text(501, ANN, "hello once", outbox, telegram_message_id=77, update_id=1000)
    again = await service.handle_text(501, ANN, "hello once", outbox, telegram_message_id=77, update_id=1000)
    assert len(first) == 1 and again == []
    assert (await _rows(database_url, "SELECT count(*) FROM messages WHERE role = 'user'"))[0][0] == 1


async def test_a_crash_before_the_reply_is_healed(service: Friend, tgi: TGIEmulator, database_url: str) -> None:
    received = await service.receive(501, ANN, "did you get this?")
    assert received.responder  # ...and then the worker died before replying
    connection = await asyncpg.connect(plain_dsn(database_url))
    await connection.execute("UPDATE conversations SET reply_lease_until = now() - interval '1 second'")
    await connection.close()
    outbox = RecordingOutbox(service.database)
    assert await service.healer.heal(outbox) == 1
    await service.background.drain()
    assert len(outbox.sent) == 1 and "did you get this?" in outbox.sent[0][1]
    assert await service.healer.heal(outbox) == 0


async def test_a_blocked_user_marks_the_chat_inactive(service: Friend, database_url: str) -> None:
    outbox = RecordingOutbox(service.database, blocked={501})
    assert await _say(service, outbox, "hi") != []
    active = await _rows(database_url, "SELECT active FROM conversations WHERE chat_id = 501")
    assert active[0][0] is False


async def test_old_update_ids_are_pruned_recent_ones_kept(service: Friend, database_url: str) -> None:
    outbox = RecordingOutbox(service.database)
    await service.handle_text(501, ANN, "old", outbox, telegram_message_id=1, update_id=10)
    await service.handle_text(501, ANN, "new", outbox, telegram_message_id=2, update_id=11)
    connection = await asyncpg.connect(plain_dsn(database_url))
    await connection.execute(
        "UPDATE processed_updates SET received_at = now() - interval '8 days' WHERE update_id = 10"
    )
    await connection.close()
    assert await ConversationRepo(service.database).prune_updates(utcnow() - UPDATE_IDS_KEPT) == 1
    assert [r[0] for r in await _rows(database_url, "SELECT update_id FROM processed_updates")] == [11]


async def test_a_debounced_burst_gets_one_reply_that_knows_the_history(service: Friend, tgi: TGIEmulator) -> None:
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "My dog is called Biscuit")
    service = build_friend(service.database, model=service.model, debounce=timedelta(seconds=0.4))
    burst = [_say(service, outbox, "so"), _say(service, outbox, "guess what happened today")]
    results = await asyncio.gather(*burst)
    assert sum(len(r) for r in results) == 1, "one reply for the whole burst"
    prompt = [m["content"] for m in tgi.chat_requests()[-1]["messages"]]
    assert len(tgi.chat_requests()) == 2
    assert "My dog is called Biscuit" in prompt, "history is read once the burst is over"
    assert prompt[-1] == "so\nguess what happened today", "the burst is answered as one turn"
    assert len(outbox.sent) == 2


class _FlakyTransport(RecordingTransport):
    """Telegram failing before it takes the message: a refused connection, then a 502, then fine."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def deliver(self, send: QueuedSend) -> SendOutcome:
        if self.failures > 0:
            self.failures -= 1
            return SendOutcome("retry", error="502: Bad Gateway")
        return await super().deliver(send)


async def test_a_reply_telegram_did_not_take_is_retried_within_seconds_and_sent_once(
    service: Friend, database_url: str
) -> None:
    transport = _FlakyTransport(failures=2)
    outbox = DeliveryQueue(service.database, transport, worker="test")
    started = time.monotonic()
    await service.handle_text(501, ANN, "please answer this", outbox)
    assert time.monotonic() - started < 5, "retries back off in seconds, not minutes"
    assert [text for _, text in transport.sent] == ["[emulated model] please answer this"]
    stored = await _rows(
        database_url, "SELECT delivered_at, telegram_message_id FROM messages WHERE role = 'assistant'"
    )
    assert stored[0]["delivered_at"] is not None and stored[0]["telegram_message_id"] == 1
    assert (await _rows(database_url, "SELECT count(*) FROM outbox"))[0][0] == 0


async def test_a_message_stored_while_the_context_is_read_waits_for_the_next_round(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    """A message stored after what a reply owes was decided is in the history but not owed yet
    (a context read before it, a reply written after). It must not be answered now (it would be
    answered twice)."""
    first = await service.receive(501, ANN, "first message")
    await service.receive(501, ANN, "second message")  # arrives while the first is being answered
    everything = await MessageRepo(service.database).recent(501, 0, 50)
    row = await ConversationRepo(service.database).get(501)
    assert row is not None and first.message_id is not None
    owed_then = [m for m in everything if m.id == first.message_id]
    reply = await service.responder.answer(
        ReplyContext(row, owed_then, everything, Memory()), RecordingOutbox(service.database)
    )
    assert reply is not None
    prompt = tgi.chat_requests()[-1]["messages"]
    assert prompt[-1] == {"role": "user", "content": "first message"}
    unanswered = await _rows(database_url, "SELECT text FROM messages WHERE role = 'user' AND answered_at IS NULL")
    assert [r[0] for r in unanswered] == ["second message"], "the second one is the next round's"


async def test_a_reply_slower_than_its_lease_keeps_the_lease(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    """The lease is renewed while the model writes, so no other worker takes the chat meanwhile."""
    service = build_friend(service.database, model=service.model, lease=timedelta(seconds=0.6))  # renewed every 0.2 s
    tgi.latency = 1.5
    outbox = RecordingOutbox(service.database)
    replying = asyncio.create_task(service.handle_text(501, ANN, "take your time", outbox))
    await until(lambda: tgi.in_flight == 1, what="the model request")
    first = (await _rows(database_url, "SELECT reply_lease_until FROM conversations"))[0][0]
    await until(lambda: _past(database_url, first + timedelta(seconds=0.3)), what="the first lease to run out")
    held = await _rows(database_url, "SELECT reply_lease_owner, reply_lease_until > now() AS live FROM conversations")
    assert (held[0]["reply_lease_owner"], held[0]["live"]) == (service.rules.worker, True)
    assert [r.text for r in await replying] == ["[emulated model] take your time"]
    released = await _rows(database_url, "SELECT reply_lease_owner FROM conversations")
    assert released[0]["reply_lease_owner"] is None


async def test_a_first_message_stores_the_user_the_chat_and_both_moves_in_order(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    """A new chat's first message (here one with signs of crisis) is stored with its user, the
    conversation's `start` and the message's own move, in that order, searchable in the user's language."""
    greta = UserInfo(user_id=777, username="greta", first_name="Greta", language_code="de")
    outbox = RecordingOutbox(service.database)
    replies = await service.handle_text(777, greta, "Ich kann nicht mehr, I want to kill myself", outbox)
    assert len(replies) == 1 and tgi.chat_requests()[-1]["messages"][0]["content"].startswith(
        service.persona.prompts.safety
    )
    log = await _rows(
        database_url,
        "SELECT from_state, to_state, trigger, user_messages, message_id IS NULL AS bare "
        "FROM state_transitions WHERE chat_id = 777 ORDER BY id",
    )
    assert [tuple(r) for r in log] == [
        (None, "icebreaker", "start", 0, True),
        ("icebreaker", "repair", "crisis", 1, False),
    ]
    user = await _rows(database_url, "SELECT username, first_name, language_code FROM users WHERE id = 777")
    assert tuple(user[0]) == ("greta", "Greta", "de")
    stored = await _rows(
        database_url,
        "SELECT search = to_tsvector('german', text) AS german FROM messages WHERE chat_id = 777 AND role = 'user'",
    )
    assert [r["german"] for r in stored] == [True]
    overview = await _rows(
        database_url, "SELECT state, user_messages, bot_messages FROM conversation_overview WHERE chat_id = 777"
    )
    assert tuple(overview[0]) == ("repair", 1, 1)


SAID_BY = UserInfo(user_id=501, username="ann")  # the user as `_say` writes (a changed name takes the locked path)


@pytest.fixture
def between_read_and_store(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], Awaitable[None]]]:
    """What happens once between a message's read and its store (another replica's command, say);
    the real store runs after it."""
    pending: list[Callable[[], Awaitable[None]]] = []
    store_message = ReplyPathRepo.store_message

    async def store_after(self: ReplyPathRepo, *args: Any, **kwargs: Any) -> Any:
        while pending:
            await pending.pop(0)()
        return await store_message(self, *args, **kwargs)

    monkeypatch.setattr(ReplyPathRepo, "store_message", store_after)
    return pending


async def test_a_context_read_before_a_clear_is_read_again(
    service: Friend,
    tgi: TGIEmulator,
    database_url: str,
    between_read_and_store: list[Callable[[], Awaitable[None]]],
) -> None:
    """A /clear that lands between a message's read and its store must not leave the old history
    in the reply: the store sees the chat changed, writes nothing, and the message is read again."""
    outbox = RecordingOutbox(service.database)
    for number in range(12):
        await _say(service, outbox, f"Remember the blue kite {number}")

    async def clear() -> None:
        async with service.commands.handling(501, SAID_BY) as unit:
            assert unit is not None
            await service.commands.reset(unit)

    between_read_and_store.append(clear)
    await _say(service, outbox, "what did I tell you?")
    prompt = tgi.chat_requests()[-1]["messages"]
    assert "blue kite" not in " ".join(m["content"] for m in prompt[1:])
    assert prompt[0]["content"].startswith(service.persona.stages.icebreaker.system)
    overview = (
        await _rows(database_url, "SELECT state, user_messages FROM conversation_overview WHERE chat_id = 501")
    )[0]
    assert tuple(overview) == ("icebreaker", 13)


async def test_a_context_read_before_the_history_moved_is_read_again(
    service: Friend,
    tgi: TGIEmulator,
    database_url: str,
    between_read_and_store: list[Callable[[], Awaitable[None]]],
) -> None:
    """Even when the stage and counts stay the same, a read from before the short-term history
    was cut (what /clear does to it) is not the one the reply is written from."""
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "Remember the blue kite")

    async def cut_history() -> None:
        connection = await asyncpg.connect(plain_dsn(database_url))
        try:
            await connection.execute(
                "UPDATE conversations SET history_since_id = (SELECT max(id) FROM messages) WHERE chat_id = 501"
            )
        finally:
            await connection.close()

    between_read_and_store.append(cut_history)
    await _say(service, outbox, "and now?")
    prompt = tgi.chat_requests()[-1]["messages"]
    assert "blue kite" not in " ".join(m["content"] for m in prompt[1:])


async def _past(database_url: str, moment: object) -> bool:
    return bool((await _rows(database_url, "SELECT now() > $1", moment))[0][0])


async def _waiting_on_a_lock(database_url: str) -> bool:
    rows = await _rows(
        database_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(rows[0][0])


async def _holding_the_chat(database_url: str, chat: int, then: str | None = None) -> tuple[asyncpg.Connection, object]:
    """Another session holding the conversation's row (as a command's transaction does); `then`,
    what it changes before it lets go."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("SELECT 1 FROM conversations WHERE chat_id = $1 FOR UPDATE", chat)
    if then:
        await connection.execute(then, chat)
    return connection, transaction


async def test_a_reply_written_ahead_asks_the_model_only_once_its_message_is_stored(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    """The reply's prompt and request are made while its message is stored; nothing reaches the
    model server before the message is in the database."""
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "hello")
    asked_before = len(tgi.chat_requests())
    connection, transaction = await _holding_the_chat(database_url, 501)
    try:
        replying = asyncio.create_task(_say(service, outbox, "are you writing already?"))
        await until(lambda: _waiting_on_a_lock(database_url), what="the store to wait for the row")
        assert len(tgi.chat_requests()) == asked_before, "the model was asked before the message was stored"
        stored = await connection.fetchval("SELECT count(*) FROM messages WHERE text = 'are you writing already?'")
        assert stored == 0
    finally:
        await transaction.rollback()  # type: ignore[attr-defined]
        await connection.close()
    assert await asyncio.wait_for(replying, 10) == ["[emulated model] are you writing already?"]
    assert len(tgi.chat_requests()) == asked_before + 1


async def test_a_reply_written_ahead_of_a_store_that_did_not_happen_is_never_sent(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    """The chat changed while the message was being stored (here its history was cut, as /clear
    does), so the store wrote nothing and was read again: the reply prepared from the old state is
    dropped, and the model is asked once, with the new one."""
    outbox = RecordingOutbox(service.database)
    await _say(service, outbox, "Remember the blue kite")
    asked_before = len(tgi.chat_requests())
    connection, transaction = await _holding_the_chat(
        database_url,
        501,
        then="UPDATE conversations SET history_since_id = (SELECT max(id) FROM messages) WHERE chat_id = $1",
    )
    try:
        replying = asyncio.create_task(_say(service, outbox, "what did I say?"))
        await until(lambda: _waiting_on_a_lock(database_url), what="the store to wait for the row")
    finally:
        await transaction.commit()  # type: ignore[attr-defined]
        await connection.close()
    assert await asyncio.wait_for(replying, 10) == ["[emulated model] what did I say?"]
    asked = tgi.chat_requests()[asked_before:]
    assert len(asked) == 1, "one reply, one request: the one prepared from the old state never left"
    assert "blue kite" not in " ".join(m["content"] for m in asked[0]["messages"][1:])


class _Drafting(RecordingTransport):
    """A transport that shows drafts, so replies are written with the model's stream."""

    async def draft(self, chat_id: int, draft_id: int, text: str) -> DraftOutcome:
        return DraftOutcome("shown")


async def test_a_model_that_never_answers_gets_the_fallback_within_llm_timeout_stream_and_retry_together(
    service: Friend, tgi: TGIEmulator
) -> None:
    """LLM_TIMEOUT is the longest a reply waits for the model: its streamed attempt and the retry
    without streaming share it (each used to get a whole one)."""
    tgi.latency = 10.0  # the server accepts the request and answers nothing for longer than the deadline
    friend = build_friend(service.database, model=service.model, llm_timeout=1.0)
    outbox = DeliveryQueue(service.database, _Drafting(), worker="test")
    assert outbox.drafts is not None, "replies are streamed"
    loop = asyncio.get_running_loop()
    started = loop.time()
    replies = await friend.handle_text(501, ANN, "are you there?", outbox)
    took = loop.time() - started
    assert [reply.kind for reply in replies] == ["fallback"]
    assert took < 1.0 + 0.8, f"the fallback came {took:.1f} s after the message with LLM_TIMEOUT=1s"


async def test_every_stage_change_is_counted_the_first_messages_start_included(service: Friend) -> None:
    outbox = RecordingOutbox(service.database)
    await service.handle_text(501, ANN, "hello there", outbox)
    async with service.commands.handling(502, UserInfo(user_id=502)) as unit:
        assert unit is not None
        await service.commands.greet(unit)
    metrics = service.metrics.render().decode()
    assert 'aifriend_transitions_total{trigger="start"} 2.0' in metrics, "a chat's first message and a /start"
