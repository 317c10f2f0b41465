"""Memory that retrieves: old lines of a chat found by PostgreSQL full-text search, in the prompt
of the message they matter to, within the prompt budget, never from another chat."""

from __future__ import annotations

import asyncpg

from app.emulators.tgi import TGIEmulator
from app.services.friend import Friend
from app.services.values import Reply
from llm.types import estimate_prompt_tokens
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox
from tests.postgres import plain_dsn

FILLER = [
    "I went to the market this morning and bought some apples",
    "We talked about the weather again",
    "The bus was late, as usual",
    "I read a chapter of my book before bed",
    "I forgot the name of that song",
    "Work was busy, lots of meetings",
    "I cooked pasta for dinner tonight",
    "My neighbour is painting his fence",
    "I watched a documentary about whales",
    "It rained all afternoon, so I stayed in",
]


async def _seed(database_url: str, chat_id: int, count: int) -> None:
    """`count` more turns of small talk (user and friend alternating), answered, as if over weeks,
    all but the last 60 folded into the notebook (as the memory keeper keeps it)."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = [
            (
                chat_id,
                "user" if n % 2 == 0 else "assistant",
                "text" if n % 2 == 0 else "reply",
                f"{FILLER[n // 2 % len(FILLER)]} ({n})",
            )
            for n in range(count)
        ]
        await connection.executemany(
            "INSERT INTO messages (chat_id, role, kind, text, answered_at, created_at) "
            "VALUES ($1, $2, $3, $4, now(), now() - interval '20 days')",
            rows,
        )
        await connection.execute(  # the counters as storing those messages would have left them
            "UPDATE conversations SET memory_summary = 'Ann likes small talk about her days.', "
            "summarized_through_id = (SELECT max(id) - 60 FROM messages WHERE chat_id = $1), "
            "user_messages = user_messages + $2, bot_messages = bot_messages + $2 WHERE chat_id = $1",
            chat_id,
            count // 2,
        )
    finally:
        await connection.close()


async def _reply(service: Friend, chat_id: int, text: str) -> Reply:
    replies = await service.handle_text(
        chat_id, UserInfo(user_id=chat_id, username="ann"), text, RecordingOutbox(service.database)
    )
    assert len(replies) == 1
    return replies[0]


async def _say(service: Friend, chat_id: int, text: str) -> tuple[str, ...]:
    return tuple(m.content for m in (await _reply(service, chat_id, text)).prompt)


async def test_a_fact_from_message_three_of_two_thousand_is_in_the_prompt_of_a_question_about_it(
    service: Friend, tgi: TGIEmulator, database_url: str
) -> None:
    await _say(service, 601, "hi there")
    await _say(service, 601, "how are you doing?")
    await _say(service, 601, "My kayak is called Blue Heron, I paddle it every weekend")
    await _seed(database_url, 601, 2000)

    reply = await _reply(service, 601, "What was the name of my kayak again?")
    prompt = tuple(m.content for m in reply.prompt)

    assert "Blue Heron" in prompt[-1], "the old line is recalled, next to the question"
    assert "Blue Heron" not in prompt[0], "not in the system message: consecutive prompts keep their start"
    assert sum("(1999)" in part or "(1998)" in part for part in prompt) >= 1, "the recent turns are there too"
    limits = await service.model.limits()
    budget = min(limits.max_input_tokens, limits.max_total_tokens - service.persona.style(reply.stage).max_new_tokens)
    assert estimate_prompt_tokens(list(reply.prompt)) <= budget
    assert tgi.rejected == 0


async def test_recall_never_reaches_into_another_chat(service: Friend, tgi: TGIEmulator, database_url: str) -> None:
    await _say(service, 701, "My kayak is called Blue Heron, I paddle it every weekend")
    await _seed(database_url, 701, 300)
    await _say(service, 702, "hello, I am new here")
    await _seed(database_url, 702, 300)

    prompt = await _say(service, 702, "What was the name of my kayak again?")

    assert not any("Blue Heron" in part for part in prompt)
    for request in tgi.chat_requests():
        text = str(request["messages"])
        if "I am new here" in text:
            assert "Blue Heron" not in text


async def test_lines_already_in_the_recent_turns_are_not_repeated(service: Friend, tgi: TGIEmulator) -> None:
    await _say(service, 801, "My kayak is called Blue Heron")
    prompt = await _say(service, 801, "What was the name of my kayak again?")
    assert "My kayak is called Blue Heron" in prompt[1], "it is right there in the recent turns"
    assert service.persona.prompts.recall_heading not in prompt[-1], "so it is not recalled a second time"


async def test_a_word_common_across_all_chats_recalls_nothing_once_the_statistics_say_so(
    service: Friend, database_url: str
) -> None:
    await _say(service, 901, "I love marmalade on my toast")
    await _seed(database_url, 901, 300)
    await _say(service, 902, "hello, I am new here")
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        await connection.executemany(  # another chat that talks about nothing else
            "INSERT INTO messages (chat_id, role, kind, text, answered_at) VALUES (902, 'user', 'text', $1, now())",
            [(f"marmalade again, jar number {n}",) for n in range(1000)],
        )
        await connection.execute("ANALYZE messages")
    finally:
        await connection.close()

    rare_in_this_chat = await _say(service, 901, "do you like marmalade?")
    assert "I love marmalade" in rare_in_this_chat[-1], "rare in the chat: recalled, until the statistics are read"

    assert await service.memory.refresh_common_words() > 0  # what the bot does hourly
    prompt = await _say(service, 901, "do you like marmalade?")
    assert "I love marmalade" not in prompt[-1], "a word in most messages anywhere says nothing about what to recall"


async def test_everyday_words_recall_nothing_from_the_first_hour(service: Friend, database_url: str) -> None:
    """No statistics yet (a fresh deployment): "today" and "good time" are still everyday words,
    while a word rare in the chat still brings its line back."""
    await _say(service, 951, "Today I had a really good time adopting a turtle named Pebble")
    await _seed(database_url, 951, 300)
    everyday = await _say(service, 951, "today was a good time again, really nice day")
    assert service.persona.prompts.recall_heading not in everyday[-1], "nothing distinctive in common"
    rare = await _say(service, 951, "how is Pebble the turtle doing, do you think?")
    assert "adopting a turtle named Pebble" in rare[-1]
