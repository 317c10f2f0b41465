"""What an operator's platform relies on: probes, metrics, and several webhook replicas."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import free_port, running_bot, webhook_replica
from tests.e2e.roundrobin import RoundRobin
from tests.faults.users import chatter, settle
from tests.waiting import START_UP, until

CHAT = 3101


def _replies(telegram: TelegramEmulator) -> int:
    return sum(len(messages) for messages in telegram.sent.values())


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status, await response.text()
        except aiohttp.ClientError:
            return 0, ""


async def _wait_status(url: str, status: int, timeout: float = START_UP) -> str:
    last = [(0, "")]

    async def answered() -> bool:
        last.append(await _get(url))
        return last[-1][0] == status

    await until(answered, within=timeout, what=f"{url} to answer {status}")
    return last[-1][1]


async def test_probes_say_alive_ready_and_what_is_down(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_bot(telegram, tgi, database_url, tmp_path, METRICS_LISTEN=f"127.0.0.1:{port}") as bot:
        ready = json.loads(await _wait_status(f"{base}/readyz", 200))
        assert ready["ready"] and ready["database"]["ok"] and ready["telegram"]["detail"] == "long polling"
        assert ready["model"]["ok"]
        assert (await _get(f"{base}/healthz"))[0] == 200
        telegram.user_sends(CHAT, "hello there")
        await telegram.wait_for(CHAT, 1)
        await tgi.stop()  # the model server goes away: users get the fallback, the bot stays ready
        status, body = await _get(f"{base}/readyz")
        assert status == 200 and not json.loads(body)["model"]["ok"], body
        _, metrics = await _get(f"{base}/metrics")
        assert 'aifriend_reply_seconds_bucket{le="0.25"}' in metrics and "aifriend_reply_seconds_count 1.0" in metrics
        assert "aifriend_model_up 0.0" in metrics and "aifriend_ready 1.0" in metrics
        assert await bot.stop() == 0


async def test_not_ready_while_telegram_is_unreachable(tgi: TGIEmulator, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    nowhere = TelegramEmulator()
    nowhere.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with running_bot(nowhere, tgi, database_url, tmp_path, METRICS_LISTEN=f"127.0.0.1:{port}") as bot:
        body = json.loads(await _wait_status(f"http://127.0.0.1:{port}/readyz", 503))
        assert body["database"]["ok"] and not body["telegram"]["ok"]
        assert "waiting for Telegram" in body["telegram"]["detail"]
        assert (await _get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        assert await bot.stop() == 0


async def test_the_scheduler_process_is_ready_once_it_sweeps(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TGI_URL": tgi.url,
        "DATABASE_URL": database_url,
        "METRICS_LISTEN": f"127.0.0.1:{port}",
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "scheduler",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        body = json.loads(await _wait_status(f"http://127.0.0.1:{port}/readyz", 200))
        assert body["scheduler"]["ok"] and body["database"]["ok"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()[-2000:]


async def test_two_webhook_replicas_behind_a_balancer_answer_each_message_once_in_order(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    """Updates alternate between two `aifriend run` processes; one is restarted mid-way (a rolling update)."""
    tgi.latency = 0.05
    ports = [free_port(), free_port()]
    balancer = RoundRobin([f"http://127.0.0.1:{p}" for p in ports])
    hook = await balancer.start() + "/telegram/hook"

    def replica(i: int) -> dict[str, str]:
        return webhook_replica(hook, ports[i], METRICS_LISTEN=f"127.0.0.1:{free_port()}", SHUTDOWN_GRACE="10s")

    first, second = replica(0), replica(1)
    sent: dict[int, int] = {}
    try:
        async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler", **second):
            async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler", **first):
                await _wait_status(f"http://{first['METRICS_LISTEN']}/readyz", 200)
                await _wait_status(f"http://{second['METRICS_LISTEN']}/readyz", 200)
                users = asyncio.create_task(chatter(telegram, range(3201, 3221), per_chat=12, every=0.4, sent=sent))
                await until(lambda: _replies(telegram) >= 40, what="both replicas answering")
            # the first replica stopped (SIGTERM) while users kept writing; the other answers alone a while
            alone = _replies(telegram)
            await until(lambda: _replies(telegram) >= alone + 20, what="the second replica answering alone")
            async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler", **first):
                await users
                result, _ = await settle(telegram, sent, patience=60)
    finally:
        await balancer.stop()
    print(
        f"two replicas: {result.line()}; served {dict(balancer.served)}; webhook statuses "
        f"{dict(telegram.webhook_statuses)}"
    )
    assert result.sent == 240 and result.lost == 0, (result.line(), result.unanswered)
    assert result.duplicates == 0 and result.order_violations == 0, result.line()
    assert all(balancer.served[f"http://127.0.0.1:{p}"] > 20 for p in ports), balancer.served
    assert telegram.webhook_sets == 1, "setWebhook once for one configuration, not per replica or start"
    assert telegram.webhook_deletes == 0 and telegram.webhook_url == hook
