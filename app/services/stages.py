"""Every change of stage is logged and counted the same way, whichever path stored it."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from app.metrics import Metrics
from fsm import Transition

log = structlog.get_logger(__name__)


def announce(metrics: Metrics, transitions: Iterable[Transition]) -> None:
    for t in transitions:
        metrics.inc("aifriend_transitions_total", trigger=t.trigger.value)
        log.info(
            "fsm_transitioned",
            from_state=t.from_stage,
            to_state=t.to_stage,
            trigger=t.trigger,
            user_messages=t.messages,
            negative=t.negative,
            positive=t.positive,
        )
