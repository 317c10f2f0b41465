"""Prefix reuse across model replicas: the SGLang Model Gateway's policies against one big replica.

Run on demand:  python -m tests.bench.bench_routing [--chats 200] [--rounds 10]
(needs the `sglang-router` wheel: pip install sglang-router)

Four emulated model replicas (TGI's dialect), each with its own prefix cache (least recently used
blocks of 16 tokens, CACHE_TOKENS each) that counts, per request, the prompt tokens it could
reuse; in front of them the real `sglang-router` binary from PyPI. `--chats` chats talk in
`--rounds` rounds (each chat sends one message a round, the chats at once, as many in flight as
MODEL_CONCURRENCY allows) through the real services and PostgreSQL. Prints the share of prompt
tokens reused with the cache-aware policy (its defaults, and tuned), with `manual` (the gateway
pins each chat by the routing key the bot sends as X-SMG-Routing-Key), with round robin, and with
one replica holding the cache of all four. Then `manual` and tuned `cache_aware` again with one
replica killed half-way: where its requests went, whether any message went unanswered or got the
fallback line, and the share round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from app.emulators.tgi import TGIEmulator
from llm.routing import secret_from
from llm.tgi import TGIChatModel
from migrations import schema as migrate
from storage.database import connect
from storage.rows import UserInfo
from tests.bench.bench_everyday import TOPICS
from tests.helpers import RecordingOutbox, build_friend
from tests.postgres import fetch, fresh_database, server_url

REPLICAS = 4
# Per replica: about 40 % of what the 200 chats' prompts grow to (some 260,000 tokens by round 10),
# so one replica with four times it holds them all, a replica seeing every chat (round robin)
# cannot, and three replicas still can after the fourth died.
CACHE_TOKENS = 100_000
TOKENS_PER_SECOND = 100.0
# The cache-aware policy sends a request to the replica with the longest matching prefix if the
# match covers --cache-threshold of it (default 0.5), else to the least loaded. Every chat's first
# prompt matches the shared system prompt by more than half, so with the default every chat lands
# on one replica; 0.75 is what this benchmark found best (0.6: the same collapse; 0.9: too few stick).
TUNED = ("--cache-threshold", "0.75")


@dataclass
class Run:
    name: str
    shares: list[float] = field(default_factory=list)  # reused / prompt tokens, round by round
    reused: int = 0
    prompt: int = 0
    fallbacks: int = 0
    unanswered: int = 0
    replies: int = 0
    moved: str = ""

    @property
    def share(self) -> float:
        return self.reused / self.prompt if self.prompt else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def gateway(urls: list[str], policy: str, extra: tuple[str, ...] = ()) -> AsyncIterator[str]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sglang_router.launch_router",
        "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
        "--worker-urls", *urls,
        "--health-check-interval-secs", "1", "--health-failure-threshold", "1",
        "--log-level", "error", *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/health") as answer:
                        if answer.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await process.wait()


def _line(chat: int, n: int) -> str:
    topic, lines = TOPICS[(chat + n) % len(TOPICS)]
    return f"{lines[(chat * 7 + n) % len(lines)]} (chat {chat}, day {n}, about {topic})"


async def conversation(
    url: str, replicas: list[TGIEmulator], run: Run, chats: int, rounds: int, kill_at: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(server_url(Path(tmp))) as database_url:
            await asyncio.to_thread(migrate.upgrade, database_url)
            database = await connect(database_url, pool_size=20)
            model = TGIChatModel(url, backoff=0.05, attempts=4, routing_secret=secret_from("bench"))
            friend = build_friend(database, None, model=model, model_concurrency=64)
            outbox = RecordingOutbox(database)
            try:
                for n in range(rounds):
                    if kill_at is not None and n == kill_at:
                        victim = replicas[1]
                        before = {i: r.cache.prompt_tokens for i, r in enumerate(replicas) if r.cache}
                        await victim.stop()
                        served = len(victim.chat_requests())
                        total = sum(len(r.chat_requests()) for r in replicas)
                    reused = sum(r.cache.reused_tokens for r in replicas if r.cache)
                    prompt = sum(r.cache.prompt_tokens for r in replicas if r.cache)
                    await asyncio.gather(
                        *(
                            friend.handle_text(c, UserInfo(c, language_code="en"), _line(c, n), outbox)
                            for c in range(1, chats + 1)
                        )
                    )
                    await friend.background.drain()
                    reused = sum(r.cache.reused_tokens for r in replicas if r.cache) - reused
                    prompt = sum(r.cache.prompt_tokens for r in replicas if r.cache) - prompt
                    run.shares.append(reused / prompt if prompt else 0.0)
                    if kill_at is not None and n == kill_at:
                        grew = {
                            i: r.cache.prompt_tokens - before[i] for i, r in enumerate(replicas) if r.cache and i != 1
                        }
                        run.moved = (
                            f"replica 2 had served {served} of {total} requests; in the round it died, the other "
                            f"replicas took these prompt tokens: {grew}"
                        )
                rows = await fetch(
                    database_url,
                    "SELECT count(*) FILTER (WHERE kind = 'fallback'), count(*) FILTER (WHERE kind = 'reply'),"
                    " (SELECT count(*) FROM messages WHERE role = 'user' AND answered_at IS NULL) FROM messages",
                )
                run.fallbacks, run.replies, run.unanswered = rows[0][0], rows[0][1], rows[0][2]
            finally:
                await friend.background.stop(0)
                await model.close()
                await database.close()
    run.reused = sum(r.cache.reused_tokens for r in replicas if r.cache)
    run.prompt = sum(r.cache.prompt_tokens for r in replicas if r.cache)


async def measure(
    name: str, policy: str | None, chats: int, rounds: int, kill_at: int | None = None, extra: tuple[str, ...] = ()
) -> Run:
    count, capacity = (REPLICAS, CACHE_TOKENS) if policy else (1, CACHE_TOKENS * REPLICAS)
    # Each replica writes TOKENS_PER_SECOND per request, so requests overlap as they do on a GPU.
    replicas = [TGIEmulator(cache_tokens=capacity, tokens_per_second=TOKENS_PER_SECOND) for _ in range(count)]
    urls = [await replica.start() for replica in replicas]
    run = Run(name)
    started = time.monotonic()
    try:
        if policy is None:
            await conversation(urls[0], replicas, run, chats, rounds, kill_at)
        else:
            async with gateway(urls, policy, extra) as url:
                await conversation(url, replicas, run, chats, rounds, kill_at)
    finally:
        for replica in replicas:
            await replica.stop()
    print(
        f"  {name:<42} {run.share:6.1%}   replies {run.replies:5}  fallbacks {run.fallbacks}  "
        f"unanswered {run.unanswered}   ({time.monotonic() - started:.0f} s)",
        flush=True,
    )
    return run


async def main(options: argparse.Namespace) -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the gateway's HTTP/2 probe of a worker
    chats, rounds = options.chats, options.rounds
    print(
        f"{chats} chats x {rounds} messages; {REPLICAS} replicas x {CACHE_TOKENS:,}-token prefix caches; "
        "share of prompt tokens reused:"
    )
    single = await measure(f"one replica, {REPLICAS * CACHE_TOKENS:,}-token cache", None, chats, rounds)
    print("    share round by round: " + " ".join(f"{share:.0%}" for share in single.shares))
    runs = [
        await measure("gateway, cache_aware (defaults)", "cache_aware", chats, rounds),
        await measure("gateway, cache_aware, --cache-threshold 0.75", "cache_aware", chats, rounds, extra=TUNED),
        await measure("gateway, manual (X-SMG-Routing-Key)", "manual", chats, rounds),
        await measure("gateway, round_robin", "round_robin", chats, rounds),
    ]
    print(
        "  of the single replica's share: "
        + ", ".join(f"{r.name.split(', ', 1)[1]} {r.share / single.share:.0%}" for r in runs)
    )
    for name, policy, extra in (("manual", "manual", ()), ("cache_aware 0.75", "cache_aware", TUNED)):
        killed = await measure(f"{name}, replica 2 killed half-way", policy, chats, rounds, rounds // 2, extra)
        print(f"    {killed.moved}")
        print("    share round by round: " + " ".join(f"{share:.0%}" for share in killed.shares))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
