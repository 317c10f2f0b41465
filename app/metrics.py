"""Prometheus `/metrics` (METRICS_LISTEN): this process's counters in the text exposition format."""

from __future__ import annotations

from collections import defaultdict

import structlog
from aiohttp import web

log = structlog.get_logger()

_HELP = {
    "aifriend_messages_received_total": "User text messages stored.",
    "aifriend_replies_total": "Bot messages written, by kind (reply, fallback, checkin, greeting, other).",
    "aifriend_reply_seconds": "Time from the newest owed message to its reply being stored.",
    "aifriend_checkin_sweeps_total": "Check-in sweeps run by this process.",
    "aifriend_transitions_total": "Relationship stage changes, by trigger.",
}


class Metrics:
    """Counters and summaries for one process; Prometheus adds them up across processes."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._sums: dict[str, tuple[int, float]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[(name, tuple(sorted(labels.items())))] += amount

    def observe(self, name: str, seconds: float) -> None:
        count, total = self._sums.get(name, (0, 0.0))
        self._sums[name] = (count + 1, total + seconds)

    def render(self) -> str:
        lines: list[str] = []
        names = sorted({name for name, _ in self._counters} | set(self._sums))
        for name in names:
            kind = "summary" if name in self._sums else "counter"
            lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} {kind}"]
            if name in self._sums:
                count, total = self._sums[name]
                lines += [f"{name}_count {count}", f"{name}_sum {total:.6f}"]
                continue
            for (counter, labels), value in sorted(self._counters.items()):
                if counter == name:
                    rendered = ",".join(f'{k}="{v}"' for k, v in labels)
                    lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: Metrics, listen: str) -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    log.info("metrics_listening", listen=listen)
    return runner
