"""Logs are structured, carry the bound chat_id, and never show a secret."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def _run(code: str) -> list[dict[str, object]]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def test_json_lines_carry_bound_context_and_mask_secrets() -> None:
    lines = _run(
        """
        import logging, structlog
        from app.logging import configure_logging
        configure_logging(fmt="json", secrets=["123456:SECRET-token", "pg-password"])
        structlog.contextvars.bind_contextvars(chat_id=42, update_id=7)
        structlog.get_logger().info("reply_sent", url="https://x/bot123456:SECRET-token/sendMessage")
        logging.getLogger("aiogram").warning("connect postgresql://u:pg-password@h/db failed")
        """
    )
    assert lines[0]["event"] == "reply_sent" and lines[0]["chat_id"] == 42 and lines[0]["update_id"] == 7
    assert "SECRET" not in json.dumps(lines) and "pg-password" not in json.dumps(lines)
    assert lines[1]["chat_id"] == 42 and "***" in str(lines[1]["event"])


def test_exceptions_are_rendered_without_secrets() -> None:
    lines = _run(
        """
        import structlog
        from app.logging import configure_logging
        configure_logging(fmt="json", secrets=["123456:SECRET-token"])
        try:
            raise RuntimeError("bad token 123456:SECRET-token")
        except RuntimeError:
            structlog.get_logger().exception("failed")
        """
    )
    assert "RuntimeError" in str(lines[0]["exception"])
    assert "SECRET" not in json.dumps(lines)
