"""The reply path against its floor: `aifriend run` beside a plain aiogram bot, same load, same run.

Run on demand (not part of the suite):  python -m tests.bench.bench_bot
Contestants, all running at once, each against a Bot API emulator of its own, the same database
server and the same load:
  refbot echo    ../shared/bench/refbot.py, VARIANT=echo (aiogram, answers at once)
  refbot store   the same after one INSERT per message (the floor for a bot that stores)
  aifriend       the real `aifriend run` (instant emulated model, REPLY_DEBOUNCE=0s, STREAM_REPLIES=false:
                 a draft is worth it for a model that takes seconds, not for one that answers at once)
They take turns, in `--rounds` rounds (in a different order each round): a slice of the steady
load, then a slice of the sustained one. These shared machines change speed by a third within
minutes; measured one after the other, a contestant's numbers said as much about the minute it
ran in as about itself. Each: latency from update to reply at a steady rate (p50/p99) and the
CPU per message meanwhile, sustained throughput with many chats writing at once, CPU per
message, RSS, lost or duplicated replies; then the ratios, over all rounds and round by round.
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
from dataclasses import dataclass, field
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from migrations import schema as migrate
from tests.bench.cpu_profile import report, sampling
from tests.e2e.bot import running_bot
from tests.e2e.roundrobin import RoundRobin
from tests.postgres import fetch, fresh_database, server_url

REPO = Path(__file__).resolve().parents[2]
REFBOT = REPO.parent / "shared" / "bench" / "refbot.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# As deployed (compose and the manifests require a key): without one, huggingface_hub looks for a
# Hugging Face token on disk on every call, 0.35 ms of CPU a reply that no deployment pays.
TGI_KEY = "bench-tgi-key"


@dataclass
class Result:
    """One contestant's numbers, summed over the slices it ran."""

    name: str
    latencies: list[float] = field(default_factory=list)  # steady phase, ms
    steady_cpu_s: float = 0.0
    steady_messages: int = 0
    burst_messages: int = 0
    burst_seconds: float = 0.0
    slowest: float = 0.0  # the longest wait for a reply in the sustained phase, s
    cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    harness_cpu_s: float = 0.0
    waited_s: float = 0.0
    transactions: int = 0
    rss_mb: float = 0.0
    lost: int = 0
    duplicated: int = 0
    rounds: list[tuple[float, float]] = field(default_factory=list)  # each slice's (p50 ms, msg/s)

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    @property
    def steady_cpu_ms(self) -> float:  # the bot's CPU per message at the steady rate (caches cold between messages)
        return self.steady_cpu_s * 1000 / max(1, self.steady_messages)

    @property
    def throughput(self) -> float:
        return self.burst_messages / self.burst_seconds if self.burst_seconds else 0.0

    def per_message(self, seconds: float) -> float:
        return seconds * 1000 / max(1, self.burst_messages)

    def counted(self) -> str:
        return f"; {self.transactions / max(1, self.burst_messages):4.2f} transactions" if self.transactions else ""

    def line(self) -> str:
        cpu = self.per_message(self.cpu_s)
        return (
            f"{self.name:<16} p50 {self.p50:6.1f} ms  p99 {self.p99:6.1f} ms (CPU {self.steady_cpu_ms:4.2f} ms/msg)"
            f"  sustained {self.throughput:6.0f} msg/s (slowest reply {self.slowest:4.1f} s)"
            f"  CPU {cpu:5.2f} ms/msg (PostgreSQL {self.per_message(self.pg_cpu_s):4.2f}, emulators "
            f"{self.per_message(self.harness_cpu_s):4.2f}; waited for a CPU {self.per_message(self.waited_s):4.2f}"
            f"{self.counted()})  RSS {self.rss_mb:5.0f} MB  lost {self.lost}  duplicated {self.duplicated}"
        )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(*pids: int) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def runqueue_seconds(*pids: int) -> float:
    """Time the processes' threads were ready to run but waited for a CPU (the kernel's schedstat)."""
    total = 0
    for task in (task for pid in pids for task in Path(f"/proc/{pid}/task").iterdir()):
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
    telegram: TelegramEmulator, rate: float, seconds: float, first_chat: int, pids: list[int]
) -> tuple[list[float], float]:
    """One message per chat at `rate` per second, from chats that wrote before (a first contact
    happens once per user; the reply path is what every later message takes); latency from
    update to reply, in ms, and the bot processes' CPU seconds meanwhile."""
    count = int(rate * seconds)
    chats = range(first_chat, first_chat + count)
    for chat in chats:
        telegram.user_sends(chat, "hi, it's me")
    await wait_all(telegram, chats, 1, 120)
    await asyncio.sleep(1.0)
    start, cpu = time.monotonic(), cpu_seconds(*pids)
    updates = {}
    for n, chat in enumerate(chats):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        updates[chat] = telegram.user_sends(chat, f"hello number {n}, how are you?")
    await wait_all(telegram, chats, 2, 120)
    return (
        [(telegram.sent[c][1]["received_at"] - telegram.pushed_at[updates[c]]) * 1000 for c in chats],
        cpu_seconds(*pids) - cpu,
    )


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
    waits = [
        reply["received_at"] - telegram.pushed_at[update_id]
        for chat in chats
        for update_id, reply in zip(sent[chat], telegram.sent[chat], strict=False)
    ]
    return throughput, max(waits, default=0.0)


@contextlib.asynccontextmanager
async def refbot(variant: str, telegram: TelegramEmulator, url: str, log: Path) -> AsyncIterator[int]:
    env = {
        **os.environ,
        "VARIANT": variant,
        "BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "DATABASE_URL": url,
    }
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
    row = (
        await fetch(url, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    )[0]
    return int(row[0])


async def measure(
    result: Result,
    pids: list[int],
    telegram: TelegramEmulator,
    options: argparse.Namespace,
    base: int,
    url: str,
    *,
    seconds: float,
    chats: int,
    profile: Path | None = None,
) -> None:
    """One slice: steady-rate latency for `seconds`, then sustained throughput with `chats` new
    chats (the first process sampled with py-spy into `profile` if given), added to `result`.
    CPU is the bot processes' together; RSS the largest one's."""
    pid = pids[0]
    async with contextlib.AsyncExitStack() as stack:
        if profile is not None and options.profile == "steady":
            await stack.enter_async_context(sampling(pid, profile))
        latencies, steady_cpu = await steady(telegram, options.rate, seconds, base + 1, pids)
    result.latencies += latencies
    result.steady_cpu_s += steady_cpu
    result.steady_messages += len(latencies)
    wave = range(base + 100_000, base + 100_000 + chats)
    transactions_before = await transactions(url) if options.count_statements else 0
    cpu_before, pg_before, harness_before = cpu_seconds(*pids), postgres_cpu_seconds(), cpu_seconds(os.getpid())
    waited_before, started = runqueue_seconds(*pids), time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        if profile is not None and options.profile == "sustained":
            await stack.enter_async_context(sampling(pid, profile))
        throughput, slowest = await burst(telegram, wave, options.per_chat)
    result.burst_seconds += time.monotonic() - started
    result.burst_messages += len(wave) * options.per_chat
    result.cpu_s += cpu_seconds(*pids) - cpu_before
    result.pg_cpu_s += postgres_cpu_seconds() - pg_before
    result.harness_cpu_s += cpu_seconds(os.getpid()) - harness_before
    result.waited_s += runqueue_seconds(*pids) - waited_before
    result.slowest = max(result.slowest, slowest)
    result.rounds.append((percentile(latencies, 0.5), throughput))
    result.rss_mb = max(rss_mb(p) for p in pids)
    if options.count_statements:  # our own first read of the count is a transaction too
        result.transactions += await transactions(url) - transactions_before - 1
    else:
        await asyncio.sleep(0.5)
    result.lost += sum(max(0, options.per_chat - len(telegram.sent[c])) for c in wave)
    result.duplicated += sum(max(0, len(telegram.sent[c]) - options.per_chat) for c in wave)


async def webhook_replicas(
    processes: int,
    tgi: TGIEmulator,
    url: str,
    folder: Path,
    options: argparse.Namespace,
    chat_base: int,
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
            bot = await stack.enter_async_context(
                running_bot(
                    telegram,
                    tgi,
                    url,
                    folder,
                    "--no-scheduler",
                    LOG_LEVEL=options.log_level,
                    TGI_API_KEY=TGI_KEY,
                    WEBHOOK_URL=hook,
                    STREAM_REPLIES="false",
                    WEBHOOK_LISTEN=f"127.0.0.1:{port}",
                )
            )
            pids.append(bot.process.pid)
        result = Result(f"webhook x{processes}")
        try:
            await warm_up(telegram, chat_base)
            await measure(result, pids, telegram, options, chat_base, url, seconds=options.seconds, chats=options.chats)
        except TimeoutError:
            print(
                "webhook deliveries:",
                dict(telegram.webhook_statuses),
                "served:",
                dict(balancer.served),
                "webhook:",
                telegram.webhook_url,
                "sets:",
                telegram.webhook_sets,
            )
            raise
    await balancer.stop()
    await telegram.stop()
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def migrate_with(tree: str | None, url: str) -> None:
    """The schema a contestant's own code expects: an earlier tree migrates with its own revisions."""
    if tree is None:
        await asyncio.to_thread(migrate.upgrade, url)
        return
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from migrations import schema; schema.upgrade(sys.argv[1])",
        url,
        env={**os.environ, "PYTHONPATH": tree},
        cwd=tree,
    )
    if await process.wait() != 0:
        raise RuntimeError(f"migrating {url} with {tree} failed")


async def warm_up(telegram: TelegramEmulator, chat: int) -> None:
    telegram.user_sends(chat, "warm up")
    await telegram.wait_for(chat, 1, 120)


@dataclass
class Contestant:
    result: Result
    pid: int
    telegram: TelegramEmulator
    base: int  # its chats are base + ..., ten million apart from the others' (a million per round)
    url: str  # its database
    profile: Path | None = None


async def main(options: argparse.Namespace) -> None:
    contestants: list[Contestant] = []
    webhooks: list[Result] = []
    profile_report = ""
    with contextlib.ExitStack() as keep:
        tmp = tempfile.mkdtemp() if options.keep_logs else keep.enter_context(tempfile.TemporaryDirectory())
        folder = Path(tmp)
        if options.keep_logs:
            print(f"logs in {folder}")
        base = server_url(folder)
        async with contextlib.AsyncExitStack() as stack:
            tgi = TGIEmulator(api_key=TGI_KEY)
            await tgi.start()
            stack.push_async_callback(tgi.stop)
            aifriends: list[tuple[str, dict[str, str]]] = [("aifriend", {})]
            if options.without_recall:
                aifriends.append(("- recall", {"MEMORY_RECALL": "false"}))
            if options.streaming:
                aifriends.append(("+ streaming", {"STREAM_REPLIES": "true"}))
            for tree in options.also_from:  # a before/after in one run: an earlier commit's tree first on the path
                aifriends.append((f"aifriend@{Path(tree).name}", {"PYTHONPATH": str(Path(tree).resolve())}))
            for n, name in enumerate([*(f"refbot {v}" for v in options.refbot), *(a for a, _ in aifriends)]):
                # Each bot its own Bot API (none waits behind another's updates) and its own database
                # on the same server: two aifriends on one would heal and send each other's replies.
                telegram = TelegramEmulator()
                await telegram.start()
                url = await stack.enter_async_context(fresh_database(base))
                await migrate_with(dict(aifriends).get(name, {}).get("PYTHONPATH"), url)
                stack.push_async_callback(telegram.stop)
                if name.startswith("refbot "):
                    variant = name.removeprefix("refbot ")
                    pid = await stack.enter_async_context(
                        refbot(variant, telegram, url, folder / f"refbot-{variant}.log")
                    )
                else:
                    bot = await stack.enter_async_context(
                        running_bot(
                            telegram,
                            tgi,
                            url,
                            folder,
                            "--no-scheduler",
                            LOG_LEVEL=options.log_level,
                            TGI_API_KEY=TGI_KEY,
                            **{"STREAM_REPLIES": "false", **dict(aifriends)[name]},
                        )
                    )
                    pid = bot.process.pid
                profile = folder / f"aifriend-{n}.pyspy" if options.profile and name == "aifriend" else None
                contestants.append(Contestant(Result(name), pid, telegram, (n + 1) * 10_000_000, url, profile))
            await asyncio.gather(*(warm_up(c.telegram, c.base) for c in contestants))
            await asyncio.sleep(1.0)
            for round_ in range(options.rounds):
                # A different order each round: no contestant always runs just after the same other.
                turn = round_ % len(contestants)
                for contestant in contestants[turn:] + contestants[:turn]:
                    profile = None
                    if contestant.profile is not None:
                        profile = contestant.profile.with_suffix(f".{round_}.pyspy")
                    await measure(
                        contestant.result,
                        [contestant.pid],
                        contestant.telegram,
                        options,
                        contestant.base + round_ * 1_000_000,
                        contestant.url,
                        seconds=options.seconds / options.rounds,
                        chats=options.chats // options.rounds,
                        profile=profile,
                    )
            if tgi.unauthorized:
                print(f"the model server refused {tgi.unauthorized} requests: those replies were fallbacks")
            for contestant in contestants:
                if contestant.profile is not None:
                    slices = sorted(folder.glob(f"{contestant.profile.stem}.*.pyspy"))
                    contestant.profile.write_text("".join(p.read_text() for p in slices))
                    profile_report = report(contestant.profile)
        for processes in options.webhook:  # after the others: several processes, one machine
            async with fresh_database(base) as url:
                await asyncio.to_thread(migrate.upgrade, url)
                tgi = TGIEmulator(api_key=TGI_KEY)
                await tgi.start()
                webhooks.append(await webhook_replicas(processes, tgi, url, folder, options, 1_000_000))
                await tgi.stop()
    results = [c.result for c in contestants] + webhooks
    print(
        f"steady {options.rate:g} msg/s for {options.seconds:g} s; sustained: {options.chats} chats x "
        f"{options.per_chat} messages, each after the previous reply; in {options.rounds} rounds, taking turns"
    )
    for result in results:
        print("  " + result.line())
    if profile_report:
        print(f"aifriend, {options.profile} phase, " + profile_report)
    floor = next((r for r in results if r.name == "refbot store"), None)
    ours = next(r for r in results if r.name == "aifriend")
    if floor is not None:
        print(
            f"aifriend / refbot store: throughput {ours.throughput / floor.throughput:.2f}x (target >= 0.45), "
            f"p50 {ours.p50 / floor.p50:.2f}x (<= 2.5), p99 {ours.p99 / floor.p99:.2f}x (<= 3), "
            f"CPU {ours.cpu_s / floor.cpu_s * floor.burst_messages / ours.burst_messages:.2f}x"
        )
        by_round = [f"{a[0] / b[0]:.2f}x / {a[1] / b[1]:.2f}x" for a, b in zip(ours.rounds, floor.rounds, strict=True)]
        print("  round by round, p50 / throughput: " + ", ".join(by_round))
    for before in (r for r in results if r.name.startswith("aifriend@")):
        print(
            f"aifriend / {before.name}: throughput {ours.throughput / before.throughput:.2f}x, "
            f"p50 {ours.p50 / before.p50:.2f}x, p99 {ours.p99 / before.p99:.2f}x, "
            f"CPU {ours.per_message(ours.cpu_s) / before.per_message(before.cpu_s):.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--per-chat", type=int, default=3)
    parser.add_argument("--refbot", nargs="*", default=["echo", "store"], help="refbot variants beside aifriend")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        choices=range(1, 10),
        metavar="1-9",
        help="turns each contestant takes, in a rotating order",
    )
    parser.add_argument("--log-level", default="INFO", help="aifriend's LOG_LEVEL (INFO is what production runs)")
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="also aifriend with STREAM_REPLIES on (drafts to the emulator, which offers them)",
    )
    parser.add_argument(
        "--without-recall",
        action="store_true",
        help="also aifriend with MEMORY_RECALL off (what retrieval costs the reply path)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="sustained",
        choices=["sustained", "steady"],
        help="sample aifriend with py-spy in that phase (sustained if not given) and print CPU by package",
    )
    parser.add_argument(
        "--count-statements",
        action="store_true",
        help="also the database's transactions per message in the sustained phase (on the reply "
        "path, statements: each commits by itself); waits 11 s around it for the counts",
    )
    parser.add_argument(
        "--also-from",
        nargs="*",
        default=[],
        metavar="TREE",
        help="also aifriend run from these source trees (e.g. `git worktree add /tmp/before <commit>`):"
        " a change's before and after, side by side in one run",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (the folder is printed)")
    parser.add_argument(
        "--webhook",
        type=int,
        nargs="*",
        default=[],
        help="then aifriend in webhook mode with this many processes behind a round-robin proxy",
    )
    asyncio.run(main(parser.parse_args()))
