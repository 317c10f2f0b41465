"""The reply path against its floor: `aifriend run` beside a plain aiogram bot, same load, same run.

Run on demand (not part of the suite):  python -m tests.bench.bench_bot
Contestants, one after the other against the same Bot API emulator, database server and load:
  refbot echo    ../shared/bench/refbot.py, VARIANT=echo (aiogram, answers at once)
  refbot store   the same after one INSERT per message (the floor for a bot that stores)
  aifriend       the real `aifriend run` (instant emulated model, REPLY_DEBOUNCE=0s, STREAM_REPLIES=false:
                 a draft is worth it for a model that takes seconds, not for one that answers at once)
Each: latency from update to reply at a steady rate (p50/p99), sustained throughput with many
chats writing at once, CPU per message, RSS, lost or duplicated replies; then the ratios.
Uses DATABASE_URL when set, else an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from storage import migrate
from tests.bench.cpu_profile import report, sampling
from tests.e2e.bot import running_bot
from tests.e2e.roundrobin import RoundRobin
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.tgi import TGIEmulator
from tests.postgres import fetch, fresh_database, server_url

REPO = Path(__file__).resolve().parents[2]
REFBOT = REPO.parent / "shared" / "bench" / "refbot.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# As deployed (compose and the manifests require a key): without one, huggingface_hub looks for a
# Hugging Face token on disk on every call, 0.35 ms of CPU a reply that no deployment pays.
TGI_KEY = "bench-tgi-key"


@dataclass
class Result:
    name: str
    p50: float = 0.0
    p99: float = 0.0
    steady_cpu_ms: float = 0.0  # the bot's CPU per message at the steady rate (caches cold between messages)
    throughput: float = 0.0
    slowest: float = 0.0  # the longest wait for a reply in the sustained phase, s
    cpu_ms: float = 0.0
    pg_cpu_ms: float = 0.0
    harness_cpu_ms: float = 0.0
    waited_ms: float = 0.0
    statements: float = 0.0
    rss_mb: float = 0.0
    lost: int = 0
    duplicated: int = 0

    def counted(self) -> str:
        return f"; {self.statements:4.2f} transactions" if self.statements else ""

    def line(self) -> str:
        return (f"{self.name:<14} p50 {self.p50:6.1f} ms  p99 {self.p99:6.1f} ms (CPU {self.steady_cpu_ms:4.2f} ms/msg)"
                f"  sustained {self.throughput:6.0f} msg/s (slowest reply {self.slowest:4.1f} s)"
                f"  CPU {self.cpu_ms:5.2f} ms/msg (PostgreSQL {self.pg_cpu_ms:4.2f}, emulators {self.harness_cpu_ms:4.2f}; waited for a CPU {self.waited_ms:4.2f}{self.counted()})  RSS {self.rss_mb:5.0f} MB  lost {self.lost}  duplicated "
                f"{self.duplicated}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def runqueue_seconds(pid: int) -> float:
    """Time the process's threads were ready to run but waited for a CPU (the kernel's schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread gone meanwhile
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on the machine (the server's backends do the statements' work)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(") ")
        except OSError:  # gone meanwhile
            continue
        if name.endswith("(postgres"):
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_all(telegram: TelegramEmulator, chats: range, per_chat: int, patience: float) -> None:
    try:
        await asyncio.gather(*(telegram.wait_for(chat, per_chat, patience) for chat in chats))
    except TimeoutError:
        missing = sum(per_chat - len(telegram.sent[c]) for c in chats if len(telegram.sent[c]) < per_chat)
        raise TimeoutError(f"{missing} replies missing") from None


async def steady(
    telegram: TelegramEmulator, rate: float, seconds: float, first_chat: int, pid: int
) -> tuple[list[float], float]:
    """One message per chat at `rate` per second, from chats that wrote before (a first contact
    happens once per user; the reply path is what every later message takes); latency from
    update to reply, in ms, and the bot's CPU per message meanwhile."""
    count = int(rate * seconds)
    chats = range(first_chat, first_chat + count)
    for chat in chats:
        telegram.user_sends(chat, "hi, it's me")
    await wait_all(telegram, chats, 1, 120)
    await asyncio.sleep(1.0)
    start, cpu = time.monotonic(), cpu_seconds(pid)
    updates = {}
    for n, chat in enumerate(chats):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        updates[chat] = telegram.user_sends(chat, f"hello number {n}, how are you?")
    await wait_all(telegram, chats, 2, 120)
    cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / count
    return [(telegram.sent[c][1]["received_at"] - telegram.pushed_at[updates[c]]) * 1000 for c in chats], cpu_ms


async def burst(telegram: TelegramEmulator, chats: range, per_chat: int) -> tuple[float, float]:
    """Every chat's user sends `per_chat` messages, each after the previous reply; messages per
    second, and the longest any of them waited for its reply (s): a reply stuck behind something
    (a claim left to run out, a lock) shows there, not in the throughput."""
    start = time.monotonic()
    sent: dict[int, list[int]] = {chat: [] for chat in chats}

    async def user(chat: int) -> None:
        for n in range(per_chat):
            sent[chat].append(telegram.user_sends(chat, f"message {n} from {chat}"))
            with contextlib.suppress(TimeoutError):  # counted as lost below
                await telegram.wait_for(chat, n + 1, 120)

    await asyncio.gather(*(user(chat) for chat in chats))
    throughput = len(chats) * per_chat / (time.monotonic() - start)
    waits = [reply["received_at"] - telegram.pushed_at[update_id]
             for chat in chats for update_id, reply in zip(sent[chat], telegram.sent[chat], strict=False)]
    return throughput, max(waits, default=0.0)


@contextlib.asynccontextmanager
async def refbot(variant: str, telegram: TelegramEmulator, url: str, log: Path) -> AsyncIterator[int]:
    env = {**os.environ, "VARIANT": variant, "BOT_TOKEN": telegram.token, "TELEGRAM_API_URL": telegram.url,
           "DATABASE_URL": url}
    with open(log, "wb") as out:
        process = await asyncio.create_subprocess_exec(sys.executable, str(REFBOT), env=env, stdout=out, stderr=out)
    try:
        yield process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def transactions(url: str) -> int:
    """Transactions the database has committed or rolled back: on the reply path every statement
    is one (no BEGIN/COMMIT around them), so per message this is statements per message."""
    await asyncio.sleep(11)  # an idle backend reports its counts within 10 s (PostgreSQL 15+)
    row = (await fetch(url, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"))[0]
    return int(row[0])


async def measure(
    name: str, pid: int, telegram: TelegramEmulator, options: argparse.Namespace, base: int, url: str,
    profile: Path | None = None,
) -> Result:
    """Steady-rate latency, then sustained throughput (sampled with py-spy into `profile` if given)."""
    telegram.user_sends(base, "warm up")
    await telegram.wait_for(base, 1, 120)
    result = Result(name)
    async with contextlib.AsyncExitStack() as stack:
        if profile is not None and options.profile == "steady":
            await stack.enter_async_context(sampling(pid, profile))
        latencies, result.steady_cpu_ms = await steady(telegram, options.rate, options.seconds, base + 1, pid)
    result.p50, result.p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    chats = range(base + 100_000, base + 100_000 + options.chats)
    transactions_before = await transactions(url) if options.count_statements else 0
    cpu_before, pg_before, harness_before = cpu_seconds(pid), postgres_cpu_seconds(), cpu_seconds(os.getpid())
    waited_before = runqueue_seconds(pid)
    async with contextlib.AsyncExitStack() as stack:
        if profile is not None and options.profile == "sustained":
            await stack.enter_async_context(sampling(pid, profile))
        result.throughput, result.slowest = await burst(telegram, chats, options.per_chat)
    result.cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / (len(chats) * options.per_chat)
    result.pg_cpu_ms = (postgres_cpu_seconds() - pg_before) * 1000 / (len(chats) * options.per_chat)
    result.harness_cpu_ms = (cpu_seconds(os.getpid()) - harness_before) * 1000 / (len(chats) * options.per_chat)
    result.waited_ms = (runqueue_seconds(pid) - waited_before) * 1000 / (len(chats) * options.per_chat)
    result.rss_mb = rss_mb(pid)
    if options.count_statements:  # our own first read of the count is a transaction too
        result.statements = (await transactions(url) - transactions_before - 1) / (len(chats) * options.per_chat)
    else:
        await asyncio.sleep(0.5)
    result.lost = sum(max(0, options.per_chat - len(telegram.sent[c])) for c in chats)
    result.duplicated = sum(max(0, len(telegram.sent[c]) - options.per_chat) for c in chats)
    return result


async def webhook_replicas(
    processes: int, telegram: TelegramEmulator, tgi: TGIEmulator, url: str, folder: Path,
    options: argparse.Namespace, chat_base: int,
) -> Result:
    """`processes` webhook replicas behind a round-robin proxy (in this process, beside the emulator).

    Each run gets a Bot API emulator of its own: a webhook is a different conversation with it."""
    telegram = TelegramEmulator(first_update_id=chat_base)  # update ids are unique per bot, across runs
    await telegram.start()
    ports = [_free_port() for _ in range(processes)]
    balancer = RoundRobin([f"http://127.0.0.1:{port}" for port in ports])
    hook = await balancer.start() + "/hook"
    async with contextlib.AsyncExitStack() as stack:
        pids = []
        for port in ports:
            bot = await stack.enter_async_context(running_bot(
                telegram, tgi, url, folder, "--no-scheduler", LOG_LEVEL=options.log_level, TGI_API_KEY=TGI_KEY,
                WEBHOOK_URL=hook,
                STREAM_REPLIES="false",
                WEBHOOK_LISTEN=f"127.0.0.1:{port}",
            ))
            pids.append(bot.process.pid)
        try:
            result = await measure(f"webhook x{processes}", pids[0], telegram, options, chat_base, url)
        except TimeoutError:
            print("webhook deliveries:", dict(telegram.webhook_statuses), "served:", dict(balancer.served),
                  "webhook:", telegram.webhook_url, "sets:", telegram.webhook_sets)
            raise
        result.cpu_ms = 0.0  # per process only; see throughput
    await balancer.stop()
    await telegram.stop()
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(options: argparse.Namespace) -> None:
    results: list[Result] = []
    profile_report = ""
    with contextlib.ExitStack() as keep:
        tmp = tempfile.mkdtemp() if options.keep_logs else keep.enter_context(tempfile.TemporaryDirectory())
        folder = Path(tmp)
        if options.keep_logs:
            print(f"logs in {folder}")
        base = server_url(folder)
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            telegram, tgi = TelegramEmulator(), TGIEmulator(api_key=TGI_KEY)
            await telegram.start()
            await tgi.start()
            chat_base = 1_000_000
            for variant in options.refbot:
                async with refbot(variant, telegram, url, folder / f"refbot-{variant}.log") as pid:
                    results.append(await measure(f"refbot {variant}", pid, telegram, options, chat_base, url))
                chat_base += 1_000_000
            async with running_bot(telegram, tgi, url, folder, "--no-scheduler", LOG_LEVEL=options.log_level,
                                   TGI_API_KEY=TGI_KEY, STREAM_REPLIES="false") as bot:
                profile = folder / "aifriend.pyspy" if options.profile else None
                results.append(await measure("aifriend", bot.process.pid, telegram, options, chat_base, url, profile))
                if profile is not None:
                    profile_report = report(profile)
            if options.without_recall:
                chat_base += 1_000_000
                async with running_bot(telegram, tgi, url, folder, "--no-scheduler", LOG_LEVEL=options.log_level,
                                       TGI_API_KEY=TGI_KEY, STREAM_REPLIES="false", MEMORY_RECALL="false") as bot:
                    results.append(await measure("- recall", bot.process.pid, telegram, options, chat_base, url))
            if options.streaming:
                chat_base += 1_000_000
                async with running_bot(telegram, tgi, url, folder, "--no-scheduler", LOG_LEVEL=options.log_level,
                                       TGI_API_KEY=TGI_KEY) as bot:
                    results.append(await measure("+ streaming", bot.process.pid, telegram, options, chat_base, url))
            for processes in options.webhook:
                chat_base += 1_000_000
                results.append(await webhook_replicas(processes, telegram, tgi, url, folder, options, chat_base))
            await telegram.stop()
            await tgi.stop()
    if tgi.unauthorized:
        print(f"the model server refused {tgi.unauthorized} requests: those replies were fallbacks")
    print(f"steady {options.rate:g} msg/s for {options.seconds:g} s; sustained: {options.chats} chats x "
          f"{options.per_chat} messages, each after the previous reply")
    for result in results:
        print("  " + result.line())
    if profile_report:
        print(f"aifriend, {options.profile} phase, " + profile_report)
    floor = next((r for r in results if r.name == "refbot store"), None)
    ours = next(r for r in results if r.name == "aifriend")
    if floor is not None:
        print(f"aifriend / refbot store: throughput {ours.throughput / floor.throughput:.2f}x (target >= 0.6), "
              f"p50 {ours.p50 / floor.p50:.2f}x (<= 2), p99 {ours.p99 / floor.p99:.2f}x (<= 3), "
              f"CPU {ours.cpu_ms / floor.cpu_ms:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--per-chat", type=int, default=3)
    parser.add_argument("--refbot", nargs="*", default=["echo", "store"], help="refbot variants to run first")
    parser.add_argument("--log-level", default="INFO", help="aifriend's LOG_LEVEL (INFO is what production runs)")
    parser.add_argument("--streaming", action="store_true",
                        help="also aifriend with STREAM_REPLIES on (drafts to the emulator, which offers them)")
    parser.add_argument("--without-recall", action="store_true",
                        help="also aifriend with MEMORY_RECALL off (what retrieval costs the reply path)")
    parser.add_argument("--profile", nargs="?", const="sustained", choices=["sustained", "steady"],
                        help="sample aifriend with py-spy in that phase (sustained if not given) and print CPU by package")
    parser.add_argument("--count-statements", action="store_true",
                        help="also the database's transactions per message in the sustained phase (on the reply "
                             "path, statements: each commits by itself); waits 11 s around it for the counts")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (the folder is printed)")
    parser.add_argument("--webhook", type=int, nargs="*", default=[],
                        help="then aifriend in webhook mode with this many processes behind a round-robin proxy")
    asyncio.run(main(parser.parse_args()))
