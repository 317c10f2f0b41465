"""A fair share of the model: MODEL_CONCURRENCY, who goes first, newcomers at the operator's pace,
and a wait in our own queue that never turns into the fallback line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from app.emulators.tgi import TGIEmulator
from app.services.friend import Friend
from app.services.gate import AccessRules
from storage.database import Database
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend, serving
from tests.postgres import fetch
from tests.waiting import until


@pytest.fixture
async def slow_model() -> AsyncIterator[TGIEmulator]:
    async with serving(TGIEmulator(latency=0.4)) as emulator:
        yield emulator


async def _close(*friends: Friend) -> None:
    for friend in friends:
        await friend.background.stop(0)
        await friend.model.close()


async def test_a_wait_in_our_own_queue_never_becomes_the_fallback_line(db: Database, slow_model: TGIEmulator) -> None:
    """Four chats at once, one model slot, 0.4 s a reply, LLM_TIMEOUT 1 s: the last waits 1.2 s in
    the queue, and still gets a real reply."""
    friend = build_friend(db, slow_model, llm_timeout=1.0, model_concurrency=1)
    outbox = RecordingOutbox(db)
    try:
        replies = await asyncio.gather(
            *(friend.handle_text(chat, UserInfo(chat), f"hello from {chat}", outbox) for chat in range(7101, 7105))
        )
    finally:
        await _close(friend)
    assert [reply.kind for [reply] in replies] == ["reply"] * 4
    assert slow_model.busiest == 1, "never more than MODEL_CONCURRENCY requests at the model"


async def test_ongoing_conversations_go_before_a_crowd_of_newcomers(db: Database, slow_model: TGIEmulator) -> None:
    slow_model.latency = 0.2
    friend = build_friend(db, slow_model, model_concurrency=1)
    outbox = RecordingOutbox(db)
    regular = 7201
    try:
        await friend.handle_text(regular, UserInfo(regular), "hi, it's me again", outbox)
        crowd = [
            asyncio.create_task(friend.handle_text(chat, UserInfo(chat), f"hi, I'm new ({chat})", outbox))
            for chat in range(7210, 7230)
        ]
        # the crowd is queued behind the first newcomer's request, which the model is answering
        await until(lambda: len(slow_model.chat_requests()) >= 2, what="a newcomer's request at the model")
        await friend.handle_text(regular, UserInfo(regular), "how was your day?", outbox)
        await asyncio.gather(*crowd)
    finally:
        await _close(friend)
    order = [request["messages"][-1]["content"] for request in slow_model.chat_requests()]
    position = order.index("how was your day?")
    assert position <= 4, f"the regular waited behind {position - 1} newcomers: {order[:6]}"


async def test_newcomers_are_let_through_at_the_operators_pace_across_processes_and_told_once(
    db: Database, tgi: TGIEmulator, database_url: str
) -> None:
    """Two bot processes (two sets of services on one database), eight new users, three a minute."""
    rules = AccessRules(newcomers_per_minute=3)
    first = build_friend(db, tgi, worker="bot-1", access=rules)
    second = build_friend(db, tgi, worker="bot-2", access=rules)
    outbox = RecordingOutbox(db)
    try:
        results = await asyncio.gather(
            *(
                (first if chat % 2 else second).handle_text(chat, UserInfo(chat), "hi there!", outbox)
                for chat in range(7301, 7309)
            )
        )
        answered = [chat for chat, replies in zip(range(7301, 7309), results, strict=True) if replies]
        again = await first.handle_text(7308, UserInfo(7308), "hello?", outbox) if 7308 not in answered else []
    finally:
        await _close(first, second)
    assert len(answered) == 3, answered
    told = [text for chat, text in outbox.sent if chat not in answered]
    assert len(told) == 5 and all("Lots of people are saying hi" in text for text in told), told
    assert again == [], "a newcomer who is waiting is told once; the second message waits too"
    held = await fetch(database_url, "SELECT count(*) FROM conversations WHERE held_for = 'newcomers'")
    assert held[0][0] == 5
    admitted = await fetch(
        database_url, "SELECT min(admitted_at), max(held_until) FROM users, conversations WHERE held_for = 'newcomers'"
    )
    assert admitted[0][1] - admitted[0][0] <= timedelta(seconds=61), "the next newcomer is let in within a minute"
