"""What /metrics shows besides aifriend's own series: the standard process metrics."""

from __future__ import annotations

from app.metrics import Metrics


def test_the_standard_process_metrics_are_there() -> None:
    shown = Metrics().render().decode()
    for series in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_info",
        "python_gc_collections_total",
    ):
        assert f"\n{series}" in shown, series
    assert "aifriend_messages_received_total 0.0" in shown
