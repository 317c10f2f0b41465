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

from app.emulators.tgi import TGIEmulator, template, tokenize
from app.services.friend import Friend
from app.settings import Settings
from llm.tgi import TGIChatModel
from migrations import schema as migrate
from storage.database import Database, connect
from storage.reply_path import ReplyPathRepo
from storage.rows import UserInfo
from storage.sql import Statement
from tests.helpers import RecordingOutbox, build_friend
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
    """Counts every query that reaches PostgreSQL from the process's pool (asyncpg's query logger
    on each connection): statements, and the BEGIN and COMMIT of each transaction."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0

    async def watch(self, connection: Any) -> None:
        connection.add_query_logger(self._query)

    def _query(self, record: Any) -> None:
        verb = record.query.split(None, 1)[0].upper()
        if verb == "BEGIN":
            self.transactions += 1
        elif verb not in ("COMMIT", "ROLLBACK"):
            self.statements += 1

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
    service: Friend, counter: RoundTrips, outbox: RecordingOutbox, tgi: TGIEmulator, chat: int
) -> None:
    user = UserInfo(user_id=chat)
    await service.handle_text(chat, user, "hello, first message", outbox)  # creates the conversation
    for n in range(200):  # a history for recall to search
        await service.handle_text(chat, user, f"Today I want to tell you about {TOPICS[n % len(TOPICS)]}, {n}.", outbox)
    await service.background.drain()
    print(f"recall {'on' if service.rules.recall else 'off'}:")
    for debounce, messages in ((timedelta(0), 20), (Settings.model_fields["reply_debounce"].default, 3)):
        service = build_friend(service.database, model=service.model, debounce=debounce, recall=service.rules.recall)
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
            await service.background.drain()
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
    if service.rules.recall:
        print("  the context read on this chat, median statement time (what retrieval adds to a reply):")
        for moment in ("before any statistics", "after ANALYZE and the hourly refresh of recall's common words"):
            if moment.startswith("after"):
                await service.database.execute(Statement("ANALYZE messages"))
                await service.memory.refresh_common_words()
            with_recall = await read_time(service, chat, service.rules.recall)
            without = await read_time(service, chat, 0)
            print(f"    {moment}: {with_recall:.2f} ms with recall, {without:.2f} ms without")


async def read_time(service: Friend, chat: int, recall: int) -> float:
    """Median time of the reply path's read statement on `chat`, asking about each topic in turn, in ms."""
    repo = ReplyPathRepo(service.database)
    timings = []
    for n in range(110):
        started = time.perf_counter()
        await repo.read(
            chat,
            default_tz="UTC",
            window=service.rules.history_window,
            query=f"do you remember {TOPICS[n % len(TOPICS)]}?",
            recall=recall,
        )
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[10:])  # the first ones plan the statement and warm the caches


async def prompt_reuse(
    service: Friend,
    outbox: RecordingOutbox,
    tgi: TGIEmulator,
    database: Database,
    messages: int,
    per_day: int,
    chat: int,
) -> None:
    user = UserInfo(user_id=chat)
    summary_marker = service.persona.prompts.summary[:40]
    first_request = len(tgi.requests)
    for n in range(messages):
        if n and n % per_day == 0:  # a new day: yesterday's messages get a day summary
            async with database.transaction() as tx:
                await tx.execute(
                    Statement("UPDATE messages SET created_at = created_at - interval '1 day' WHERE chat_id = :c"),
                    c=chat,
                )
                await tx.execute(
                    Statement(
                        "UPDATE conversations SET last_user_message_at = last_user_message_at - interval '1 day' "
                        "WHERE chat_id = :c"
                    ),
                    c=chat,
                )
        topic = TOPICS[n % len(TOPICS)]
        await service.handle_text(
            chat,
            user,
            f"Today I want to tell you about {topic}, part {n}.",
            outbox,
            update_id=chat * 100_000 + 50_000 + n,
        )
        await service.background.drain()
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
            counter = RoundTrips()
            database = await connect(url, on_connection=counter.watch)
            model = TGIChatModel(tgi.url)
            outbox = RecordingOutbox(database)
            for chat, recall in ((1, 8), (2, 0)):
                service = build_friend(database, model=model, recall=recall)
                await count_round_trips(service, counter, outbox, tgi, chat)
                service = build_friend(database, model=model, recall=recall)
                await prompt_reuse(service, outbox, tgi, database, options.messages, options.per_day, chat + 10)
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
