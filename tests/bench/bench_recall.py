"""Does the friend remember what was said weeks ago? Recall with retrieval against summaries alone.

Run on demand:  python -m tests.bench.bench_recall [--messages 5000 --large 500000]

A conversation of `--messages` messages over 30 simulated days holds 50 distinct facts (names,
places, dates) among everyday small talk; all but its last turns are folded into memory, as the
memory keeper leaves it. Then each fact is asked about in a new message, through the real
services, PostgreSQL and the TGI emulator; recall = the share of those questions whose
prompt (what the model is sent) contains the fact. Twice: with retrieval, and with summaries
alone (MEMORY_RECALL=false).

The emulated model cannot summarize, so the summaries are written for it, and generously: a
notebook of 150 words (the persona's limit) holding the newest facts and nothing else, and day
summaries naming every fact of their day. A real model's summaries keep less; this is the best
summaries alone can do.

Then the reply path's read statement, with and without retrieval, on that chat and on a chat of
`--large` messages (the statement that reads a reply's context; retrieval rides inside it).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from app.emulators.tgi import TGIEmulator
from app.services.friend import Friend
from llm.tgi import TGIChatModel
from llm.types import estimate_prompt_tokens
from migrations import schema as migrate
from storage.database import connect
from storage.reply_path import ReplyPathRepo
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend
from tests.postgres import fresh_database, plain_dsn, server_url

HISTORY_WINDOW = 200  # as the services read it (ReplyRules.history_window)
RECALL_CANDIDATES = 8  # as the services recall (ReplyRules.recall)

NAMES = [
    "Alma",
    "Bruno",
    "Cosima",
    "Dario",
    "Elif",
    "Fenna",
    "Goran",
    "Hedda",
    "Ivo",
    "Juno",
    "Kaito",
    "Lupita",
    "Mireille",
    "Nandor",
    "Oona",
    "Piet",
    "Quirin",
]
CITIES = [
    "Porto",
    "Tallinn",
    "Ghent",
    "Bergamo",
    "Valparaiso",
    "Kyoto",
    "Ljubljana",
    "Hobart",
    "Tromso",
    "Bilbao",
    "Cusco",
    "Leuven",
    "Aarhus",
    "Bruges",
    "Salzburg",
    "Gdansk",
    "Lyon",
]
RELATIONS = [
    "sister",
    "brother",
    "cousin",
    "boss",
    "dentist",
    "neighbour",
    "landlord",
    "coach",
    "grandmother",
    "godson",
    "nephew",
    "niece",
    "roommate",
    "therapist",
    "mentor",
    "uncle",
    "aunt",
]
EVENTS = [
    "wedding",
    "honeymoon",
    "reunion",
    "conference",
    "surgery",
    "interview",
    "concert",
    "marathon",
    "exam",
    "audition",
    "recital",
    "retreat",
    "hackathon",
    "tournament",
    "graduation",
    "baptism",
    "festival",
]
THINGS = [
    "dog",
    "parrot",
    "bike",
    "boat",
    "car",
    "guitar",
    "piano",
    "laptop",
    "garden",
    "tattoo",
    "apartment",
    "bakery",
    "podcast",
    "novel",
    "band",
    "telescope",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
SMALL_TALK = [
    "I had a long day at work today",
    "The weather was grey again",
    "I made soup for dinner",
    "I watched a film last night, it was fine",
    "I went for a walk in the afternoon",
    "Work is busy this week",
    "I slept badly, too much coffee maybe",
    "I tidied the kitchen and did laundry",
    "I read a few pages before bed",
    "The bus was late again this morning",
    "I met a friend for lunch, we talked about nothing much",
    "It was sunny for once, so I sat outside",
    "I forgot the name of that song again",
    "Where did the week go?",
    "I got some groceries on the way home",
    "I feel a bit tired but okay",
    "Nothing special happened today",
    "I tried a new recipe, it was good",
    "Had a quiet evening at home",
    "The day went by quickly",
]
ANSWERS = [
    "That sounds like a full day. How are you feeling now?",
    "Oh, I know that feeling. Tell me more?",
    "That's nice to hear.",
    "Hmm, and what did you make of it?",
    "I'm glad you told me.",
]


def facts() -> list[tuple[str, str, str]]:
    """50 (fact, question, answer) triples, each about something no other fact mentions."""
    out = [(f"My {r}'s name is {n}.", f"What's my {r}'s name again?", n) for r, n in zip(RELATIONS, NAMES, strict=True)]
    out += [
        (f"The {e} will be in {c} this year.", f"Where is the {e} going to be?", c)
        for e, c in zip(EVENTS, CITIES, strict=True)
    ]
    out += [
        (f"I got my {t} on {3 + n} {MONTHS[n % 12]}.", f"When did I get my {t}?", f"{3 + n} {MONTHS[n % 12]}")
        for n, t in enumerate(THINGS)
    ]
    return out


async def seed(dsn: str, chat_id: int, total: int, planted: list[tuple[str, str, str]], seed_: int = 7) -> None:
    """A chat of `total` messages over 30 days with the facts at random user turns, folded up to its last 60."""
    rng = random.Random(seed_)
    start = datetime.now(UTC) - timedelta(days=31)
    fact_at = dict(zip(rng.sample(range(0, total - 200, 2), len(planted)), planted, strict=True))
    rows = []
    for n in range(total):
        at = start + timedelta(days=30 * n / total)
        if n % 2 == 0:
            text = fact_at[n][0] if n in fact_at else f"{rng.choice(SMALL_TALK)}."
            rows.append((chat_id, "user", "text", text, at))
        else:
            rows.append((chat_id, "assistant", "reply", rng.choice(ANSWERS), at))
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("INSERT INTO users (id, username, language_code) VALUES ($1, 'ann', 'en')", chat_id)
        await connection.execute(
            "INSERT INTO conversations (chat_id, user_id, state, user_messages) VALUES ($1, $1, 'close', $2)",
            chat_id,
            total // 2,
        )
        await connection.executemany(
            "INSERT INTO messages (chat_id, role, kind, text, created_at, answered_at) VALUES ($1, $2, $3, $4, $5, $5)",
            rows,
        )
        # Summaries alone at their best: the newest facts in 150 words, and each day's facts by day.
        ordered = [fact_at[n][0] for n in sorted(fact_at)]
        notebook: list[str] = []
        for fact in reversed(ordered):
            if sum(len(f.split()) for f in notebook) + len(fact.split()) > 150:
                break
            notebook.insert(0, fact)
        await connection.execute(
            "UPDATE conversations SET memory_summary = $2, "
            "summarized_through_id = (SELECT max(id) - 60 FROM messages WHERE chat_id = $1) WHERE chat_id = $1",
            chat_id,
            " ".join(notebook),
        )
        days: dict[object, list[str]] = {}
        for n in sorted(fact_at):
            days.setdefault(rows[n][4].date(), []).append(fact_at[n][0])
        await connection.executemany(
            "INSERT INTO daily_summaries (chat_id, day, text, through_message_id) VALUES ($1, $2, $3, 0)",
            [(chat_id, day, " ".join(texts)) for day, texts in days.items()],
        )
    finally:
        await connection.close()


async def analyze(dsn: str) -> None:
    """What autovacuum and the bot's hourly maintenance will have done by then: column statistics,
    and recall's common words read from them."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("ANALYZE messages")
        await connection.execute("SELECT aifriend_refresh_common_words()")
    finally:
        await connection.close()


async def large_chat(dsn: str, chat_id: int, total: int) -> None:
    """A chat of `total` messages written by PostgreSQL itself (fast), one fact in it."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("INSERT INTO users (id, username, language_code) VALUES ($1, 'bo', 'en')", chat_id)
        await connection.execute(
            "INSERT INTO conversations (chat_id, user_id, user_messages) VALUES ($1, $1, $2)", chat_id, total // 2
        )
        await connection.execute(
            """
            INSERT INTO messages (chat_id, role, kind, text, created_at, answered_at)
            SELECT $1, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END,
                   CASE WHEN g % 2 = 0 THEN 'text' ELSE 'reply' END,
                   CASE WHEN g = 1000 THEN 'My sister''s name is Alma.'
                        ELSE ($3::text[])[1 + g % array_length($3::text[], 1)] || ' (' || g || ')' END,
                   now() - interval '60 days' + g * interval '1 second', now()
              FROM generate_series(1, $2) AS g
            """,
            chat_id,
            total,
            SMALL_TALK,
        )
        await connection.execute(
            "UPDATE conversations SET summarized_through_id = "
            "(SELECT max(id) - 60 FROM messages WHERE chat_id = $1) WHERE chat_id = $1",
            chat_id,
        )
    finally:
        await connection.close()
    await analyze(dsn)


async def ask(service: Friend, chat_id: int, planted: list[tuple[str, str, str]]) -> tuple[float, float]:
    """Recall (share of questions whose prompt holds the answer) and the mean prompt size in tokens."""
    hits, sizes = 0, []
    outbox = RecordingOutbox(service.database)
    for _, question, answer in planted:
        replies = await service.handle_text(chat_id, UserInfo(chat_id, "ann", language_code="en"), question, outbox)
        prompt = replies[0].prompt
        sizes.append(estimate_prompt_tokens(list(prompt)))
        hits += any(answer in message.content for message in prompt)
    return hits / len(planted), statistics.mean(sizes)


async def read_times(url: str, chat_id: int, questions: list[str], recall: int) -> float:
    """Median time of the reply path's read statement, in ms, on a connection of the bot's own pool
    (planned as the bot's are)."""
    database = await connect(url, pool_size=1)
    try:
        repo = ReplyPathRepo(database)
        timings = []
        for question in questions * 3:
            started = time.perf_counter()
            await repo.read(chat_id, default_tz="UTC", window=HISTORY_WINDOW, query=question, recall=recall)
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings[len(questions) :])  # the first round warms caches and plans
    finally:
        await database.close()


async def main(options: argparse.Namespace) -> None:
    planted = facts()
    questions = [q for _, q, _ in planted]
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(server_url(Path(tmp))) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            dsn = plain_dsn(url)
            await seed(dsn, 1, options.messages, planted)
            await seed(dsn, 2, options.messages, planted)
            await analyze(dsn)
            tgi = TGIEmulator()
            await tgi.start()
            database = await connect(url, pool_size=4)
            model = TGIChatModel(tgi.url)
            results = {}
            try:
                for chat_id, recall in ((1, True), (2, False)):
                    service = build_friend(database, model=model, recall=RECALL_CANDIDATES if recall else 0)
                    results[recall] = await ask(service, chat_id, planted)
                    await service.background.stop(0)
            finally:
                await database.close()
                await model.close()
                await tgi.stop()
            small = [await read_times(url, 1, questions, recall) for recall in (RECALL_CANDIDATES, 0)]
            started = time.monotonic()
            await large_chat(dsn, 3, options.large)
            built = time.monotonic() - started
            large = [await read_times(url, 3, questions, recall) for recall in (RECALL_CANDIDATES, 0)]
    print(
        f"50 facts in {options.messages} messages over 30 days, each asked about once (TGI emulator limits "
        f"{tgi.max_input_tokens}/{tgi.max_total_tokens} tokens):"
    )
    for recall, label in ((True, "with retrieval"), (False, "summaries alone")):
        share, size = results[recall]
        print(f"  {label:<16} recall {share:6.0%}   mean prompt {size:6.0f} tokens")
    print("reply path read statement (median):")
    print(f"  {options.messages:>7} messages: {small[0]:.2f} ms with retrieval, {small[1]:.2f} ms without")
    print(
        f"  {options.large:>7} messages: {large[0]:.2f} ms with retrieval, {large[1]:.2f} ms without "
        f"(chat written in {built:.0f} s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--large", type=int, default=500_000)
    asyncio.run(main(parser.parse_args()))
