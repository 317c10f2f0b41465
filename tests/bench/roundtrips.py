"""What one reply costs the database and the model server, measured on the real service.

Run: python -m tests.bench.roundtrips   (embedded PostgreSQL, or DATABASE_URL)

1. Database round trips per reply: every statement plus every BEGIN and COMMIT, from the
   message being stored to the reply being recorded as sent (the outbox included), with
   REPLY_DEBOUNCE=0 and with the default debounce.
2. Prompt reuse on the GPU: over a long conversation spread across simulated days (memory folds
   and day summaries included), the share of each reply prompt that is a token prefix of the
   chat's previous reply prompt (what TGI's prefix cache can reuse), and the fresh tokens each
   reply makes the server compute.
Both with recall (older matching lines in the prompt, MEMORY_RECALL=true, the default) and
without, to show what retrieval adds: no round trip, the time a reply takes here (database and
emulated model on one machine), and what it does to prefix reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from app.emulators.tgi import TGIEmulator, template, tokenize
from app.persona import load_persona
from app.services.conversation import HISTORY_WINDOW, RECALL_CANDIDATES, ConversationService
from app.settings import Settings
from llm.sentiment import VaderScorer
from llm.tgi import TGIChatModel
from storage import migrate
from storage.conversations import UserInfo
from storage.database import Database, connect
from storage.reply_path import ReplyPathRepo
from tests.helpers import RecordingOutbox
from tests.postgres import fresh_database, server_url

TOPICS = [
    "my sister Ana",
    "the garden",
    "work at the bakery",
    "a trip to Porto",
    "my cat Miso",
    "the choir",
    "learning Spanish",
    "the marathon",
    "my grandmother's recipes",
    "a new flat",
]


class RoundTrips:
    """Counts what reaches PostgreSQL from both pools: statements SQLAlchemy runs (its prepared
    statements), statements sent straight through asyncpg (asyncpg's query logger sees those, on
    SQLAlchemy's connections and on the reply path's own pool), and a BEGIN and a COMMIT for each
    transaction that is not in autocommit."""

    def __init__(self, database: Database) -> None:
        self.statements = 0
        self.transactions = 0
        engine = database.engine.sync_engine
        event.listen(engine, "connect", self._watch)
        database.direct.on_connect(self._watch_direct)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)

    def _watch(self, dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._raw)

    async def _watch_direct(self, connection: Any) -> None:
        connection.add_query_logger(self._raw)

    def _raw(self, record: Any) -> None:
        if record.query.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            self.statements += 1

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _begin(self, connection: Any) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            self.transactions += 1

    def reset(self) -> None:
        self.statements = self.transactions = 0

    @property
    def total(self) -> int:
        return self.statements + 2 * self.transactions


def prompt_tokens(body: dict[str, Any]) -> list[str]:
    return [word for word, _, _ in tokenize(template(body["messages"]))]


def shared_prefix(previous: list[str], current: list[str]) -> int:
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        n += 1
    return n


async def count_round_trips(
    service: ConversationService, counter: RoundTrips, outbox: RecordingOutbox, tgi: TGIEmulator, chat: int
) -> None:
    user = UserInfo(user_id=chat)
    await service.handle_text(chat, user, "hello, first message", outbox)  # creates the conversation
    for n in range(200):  # a history for recall to search
        await service.handle_text(chat, user, f"Today I want to tell you about {TOPICS[n % len(TOPICS)]}, {n}.", outbox)
    await service.drain()
    print(f"recall {'on' if service.recall else 'off'}:")
    for debounce, messages in ((timedelta(0), 20), (Settings.model_fields["reply_debounce"].default, 3)):
        service.reply_debounce = debounce
        totals, statements, transactions, took = [], [], [], []
        for n in range(messages):
            counter.reset()
            before = len(tgi.requests)
            sent = 100 + len(outbox.sent)
            started = time.perf_counter()
            await service.handle_text(
                chat,
                user,
                f"message number {n} about {TOPICS[n % len(TOPICS)]}",
                outbox,
                telegram_message_id=sent,
                update_id=chat * 100_000 + sent,
            )
            took.append((time.perf_counter() - started) * 1000 - debounce.total_seconds() * 1000)
            await service.drain()
            totals.append(counter.total)
            statements.append(counter.statements)
            transactions.append(counter.transactions)
            calls = [path for path, _ in tgi.requests[before:]]
        print(
            f"  REPLY_DEBOUNCE={debounce.total_seconds():g}s: {statistics.median(totals):g} round trips per reply "
            f"({statistics.median(statements):g} statements in {statistics.median(transactions):g} transactions)"
            f"; model server: {calls.count('/v1/chat/completions')} generation, "
            f"{calls.count('/chat_tokenize')} token count; {statistics.median(took):.1f} ms per reply "
            f"(median, the debounce wait not counted)"
        )
    if service.recall:
        print("  the context read on this chat, median statement time (what retrieval adds to a reply):")
        for moment in ("before any statistics", "after ANALYZE and the hourly refresh of recall's common words"):
            if moment.startswith("after"):
                async with service.database.raw() as connection:
                    await connection.execute("ANALYZE messages")
                    await connection.execute("SELECT aifriend_refresh_common_words()")
            with_recall = await read_time(service, chat, service.recall)
            without = await read_time(service, chat, 0)
            print(f"    {moment}: {with_recall:.2f} ms with recall, {without:.2f} ms without")


async def read_time(service: ConversationService, chat: int, recall: int) -> float:
    """Median time of the reply path's read statement on `chat`, asking about each topic in turn, in ms."""
    async with service.database.raw() as connection:
        repo = ReplyPathRepo(connection)
        timings = []
        for n in range(110):
            started = time.perf_counter()
            await repo.read(
                chat,
                default_tz="UTC",
                window=HISTORY_WINDOW,
                query=f"do you remember {TOPICS[n % len(TOPICS)]}?",
                recall=recall,
            )
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[10:])  # the first ones plan the statement and warm the caches


async def prompt_reuse(
    service: ConversationService,
    outbox: RecordingOutbox,
    tgi: TGIEmulator,
    database: Any,
    messages: int,
    per_day: int,
    chat: int,
) -> None:
    user = UserInfo(user_id=chat)
    summary_marker = service.persona.prompts.summary[:40]
    first_request = len(tgi.requests)
    for n in range(messages):
        if n and n % per_day == 0:  # a new day: yesterday's messages get a day summary
            async with database.engine.begin() as connection:
                await connection.execute(
                    text("UPDATE messages SET created_at = created_at - interval '1 day' WHERE chat_id = :c"),
                    {"c": chat},
                )
                await connection.execute(
                    text(
                        "UPDATE conversations SET last_user_message_at = last_user_message_at - interval '1 day' "
                        "WHERE chat_id = :c"
                    ),
                    {"c": chat},
                )
        topic = TOPICS[n % len(TOPICS)]
        await service.handle_text(
            chat,
            user,
            f"Today I want to tell you about {topic}, part {n}.",
            outbox,
            update_id=chat * 100_000 + 50_000 + n,
        )
        await service.drain()
    replies = [
        body
        for path, body in tgi.requests[first_request:]
        if path == "/v1/chat/completions" and not body["messages"][0]["content"].startswith(summary_marker)
    ]
    shares, fresh, lengths = [], [], []
    previous: list[str] | None = None
    for body in replies:
        tokens = prompt_tokens(body)
        if previous is not None:
            common = shared_prefix(previous, tokens)
            shares.append(common / len(tokens))
            fresh.append(len(tokens) - common)
        lengths.append(len(tokens))
        previous = tokens
    folds = len(
        [
            1
            for path, body in tgi.requests[first_request:]
            if path == "/v1/chat/completions" and body["messages"][0]["content"].startswith(summary_marker)
        ]
    )
    ordered = sorted(shares)
    print(
        f"  prompt reuse over {messages} messages in {messages // per_day} simulated days ({folds} summaries "
        f"written): mean prefix share {statistics.mean(shares):.1%}, p10 {ordered[len(ordered) // 10]:.1%}, "
        f"min {ordered[0]:.1%}; fresh prompt tokens per reply: mean {statistics.mean(fresh):.0f}, "
        f"median {statistics.median(fresh):.0f}; prompt length: mean {statistics.mean(lengths):.0f}, "
        f"max {max(lengths)} tokens"
    )


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            tgi = TGIEmulator(
                max_input_tokens=options.max_input_tokens, max_total_tokens=options.max_input_tokens + 256
            )
            await tgi.start()
            database = connect(url)
            counter = RoundTrips(database)
            model = TGIChatModel(tgi.url)
            service = ConversationService(database=database, model=model, scorer=VaderScorer(), persona=load_persona())
            outbox = RecordingOutbox(database)
            for chat, recall in ((1, RECALL_CANDIDATES), (2, 0)):
                service.recall = recall
                await count_round_trips(service, counter, outbox, tgi, chat)
                service.reply_debounce = timedelta(0)
                await prompt_reuse(service, outbox, tgi, database, options.messages, options.per_day, chat + 10)
            await service.close()
            await model.close()
            await outbox.close(1.0)
            await database.close()
            await tgi.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--per-day", type=int, default=150)
    parser.add_argument("--max-input-tokens", type=int, default=2048)
    asyncio.run(main(parser.parse_args()))
