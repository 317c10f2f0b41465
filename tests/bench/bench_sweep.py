"""The check-in sweep's due query over a million conversations, a thousand of them due.

Run on demand:  python -m tests.bench.bench_sweep [--conversations 1000000] [--due 1000]
Uses DATABASE_URL when set, else an embedded PostgreSQL in a temporary folder. Prints the
median and worst time of the real claim query (`CheckinRepo.due`, FOR UPDATE SKIP LOCKED,
rolled back after each run) and the plan PostgreSQL chose.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from migrations import schema as migrate
from storage.checkins import CheckinRepo
from storage.database import connect
from tests.postgres import fresh_database, plain_dsn, server_url


class _RolledBack(Exception):
    pass


async def seed(url: str, conversations: int, due: int) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        await connection.execute(f"INSERT INTO users (id) SELECT g FROM generate_series(1, {conversations}) g")
        # Most conversations were written to recently (due in the future), some never get one
        # (check-ins off, blocked, or at the cap), and `due` of them are due now.
        await connection.execute(
            f"""
            INSERT INTO conversations (chat_id, user_id, state, last_user_message_at, checkins_enabled, active,
                                       next_checkin_at)
            SELECT g, g, 'warming', now() - interval '1 hour',
                   g % 10 <> 0, g % 25 <> 0,
                   CASE WHEN g <= {due} THEN now() - (g || ' seconds')::interval
                        WHEN g % 10 = 0 OR g % 25 = 0 OR g % 7 = 0 THEN NULL
                        ELSE now() + (g % 86400 || ' seconds')::interval END
              FROM generate_series(1, {conversations}) g
            """
        )
        await connection.execute("ANALYZE users; ANALYZE conversations")
    finally:
        await connection.close()


async def main(conversations: int, due: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(server_url(Path(tmp))) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            started = time.perf_counter()
            await seed(url, conversations, due)
            print(f"seeded {conversations:,} conversations ({due:,} due) in {time.perf_counter() - started:.1f}s")
            database = await connect(url)
            timings, found = [], 0
            for _ in range(runs):
                try:  # the claim's transaction, rolled back: every run finds the same rows due
                    async with database.transaction() as tx:
                        started = time.perf_counter()
                        rows = await CheckinRepo(tx).due(datetime.now(UTC), 2, due)
                        timings.append((time.perf_counter() - started) * 1000)
                        found = len(rows)
                        raise _RolledBack
                except _RolledBack:
                    pass
            await database.close()
            connection = await asyncpg.connect(plain_dsn(url))
            plan = await connection.fetch(
                "EXPLAIN ANALYZE SELECT c.chat_id, c.next_checkin_at, u.timezone FROM conversations c "
                "JOIN users u ON u.id = c.user_id WHERE c.next_checkin_at <= now() AND c.active "
                f"AND c.checkins_enabled AND c.checkins_unanswered < 2 ORDER BY c.next_checkin_at LIMIT {due} "
                "FOR UPDATE OF c SKIP LOCKED"
            )
            await connection.close()
    print(
        f"due query (claims {found:,} rows): median {statistics.median(timings):.1f} ms, "
        f"worst {max(timings):.1f} ms over {runs} runs"
    )
    print("plan:")
    for row in plan:
        print("   ", row[0])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    asyncio.run(main(options.conversations, options.due, options.runs))
