"""Prometheus metrics of one process, and the small HTTP server (METRICS_LISTEN) that shows them.

Each `Metrics` owns its registry, so several services in one process (tests, the demo) never
share counters; Prometheus adds processes up. Latencies are histograms: p50/p95/p99 come from
`histogram_quantile()` over the buckets, across any number of processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # type: ignore[no-untyped-call]  # _created series only double what Prometheus keeps

log = structlog.get_logger(__name__)

# name -> (help, label names); counters end in _total, as Prometheus expects.
_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aifriend_messages_received_total": ("User text messages stored.", ()),
    "aifriend_replies_total": ("Bot messages written, by kind (reply, fallback, checkin, greeting, ...).", ("kind",)),
    "aifriend_checkin_sweeps_total": ("Check-in sweeps run by this process.", ()),
    "aifriend_transitions_total": ("Relationship stage changes, by trigger.", ("trigger",)),
    "aifriend_sends_total": ("Bot API send attempts, by outcome (sent, retry, give_up, blocked).", ("outcome",)),
    "aifriend_updates_set_aside_total": ("Telegram updates set aside as dead letters.", ()),
    "aifriend_newcomers_admitted_total": ("New users whose first message was let through to the model.", ()),
    "aifriend_newcomers_deferred_total": ("Times a new user's first reply waited for NEWCOMERS_PER_MINUTE.", ()),
    "aifriend_held_total": (
        "Times a chat was held unanswered, by reason (replies, tokens, newcomers, allowlist, invite, approval, ...).",
        ("reason",),
    ),
}
_HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "aifriend_reply_seconds": (
        "Time from the newest owed message being stored to its reply being stored (model time included).",
        (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60),
    ),
    "aifriend_model_seconds": (
        "Time one reply waited for the model server.",
        (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60),
    ),
    "aifriend_model_queue_wait_seconds": (
        "Time a model request waited in this process's fair queue for one of MODEL_CONCURRENCY slots.",
        (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    ),
}
_GAUGES: dict[str, str] = {
    "aifriend_model_up": "1 when the last contact with the model server succeeded, 0 when it failed.",
    "aifriend_ready": "1 when this process's /readyz checks pass.",
    "aifriend_model_queue_depth": "Model requests waiting in this process's fair queue for a slot.",
}


class Metrics:
    """Counters, histograms and gauges for one process, by name, so services need not import metric objects."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The standard process metrics (resident memory, CPU, open files; Python's version and its
        # garbage collector), as the default registry would have them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._counters = {
            name: Counter(name.removesuffix("_total"), help, labels, registry=self.registry)
            for name, (help, labels) in _COUNTERS.items()
        }
        self._histograms = {
            name: Histogram(name, help, buckets=buckets, registry=self.registry)
            for name, (help, buckets) in _HISTOGRAMS.items()
        }
        self._gauges = {name: Gauge(name, help, registry=self.registry) for name, help in _GAUGES.items()}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._counters[name]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def observe(self, name: str, seconds: float) -> None:
        self._histograms[name].observe(seconds)

    def set(self, name: str, value: float) -> None:
        self._gauges[name].set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


Check = Callable[[], Awaitable[tuple[bool, str]]]


class Health:
    """What `/readyz` checks: named probes, each answering (ok, detail).

    `required` checks decide readiness; `informative` ones (the model server) only show in the
    body and in metrics: users still get the fallback line when the model is down."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.required: dict[str, Check] = {}
        self.informative: dict[str, Check] = {}
        self.stopping = False

    async def report(self) -> tuple[bool, dict[str, Any]]:
        body: dict[str, Any] = {}
        ready = not self.stopping
        if self.stopping:
            body["stopping"] = "shutting down: finishing what is in flight"
        for name, check in [*self.required.items(), *self.informative.items()]:
            try:
                ok, detail = await check()
            except Exception as exc:  # a probe must answer, whatever broke
                ok, detail = False, f"{exc.__class__.__name__}: {str(exc)[:200]}"
            body[name] = {"ok": ok, "detail": detail}
            if name in self.required:
                ready = ready and ok
        body["ready"] = ready
        self.metrics.set("aifriend_ready", 1 if ready else 0)
        return ready, body


async def serve_metrics(metrics: Metrics, listen: str, health: Health | None = None) -> web.AppRunner:
    """`/metrics`; `/healthz` (the event loop answers); `/readyz` (200 or 503, a JSON body naming each check)."""

    async def show_metrics(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def alive(_: web.Request) -> web.Response:
        # Served by the same event loop as everything else: a blocked loop fails this probe.
        return web.json_response({"alive": True})

    async def ready(_: web.Request) -> web.Response:
        if health is None:
            return web.json_response({"ready": True})
        ok, body = await health.report()
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", show_metrics)
    app.router.add_get("/healthz", alive)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    log.info("metrics_listening", listen=listen)
    return runner
