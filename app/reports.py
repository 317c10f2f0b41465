"""Operator reports as text, for `aifriend inspect/stats` and the admin commands alike."""

from __future__ import annotations

from typing import Any

from storage.reports import ConversationReport, StatsReport


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def format_conversation(report: ConversationReport) -> str:
    o = report.overview
    lines = [
        f"chat {o['chat_id']} (user {o['user_id']}{', @' + o['username'] if o['username'] else ''})",
        f"state: {o['state']}" + (f" (left {o['stage_before_repair']})" if o["stage_before_repair"] else ""),
        f"messages: {o['user_messages']} from the user, {o['bot_messages']} from the bot",
        f"last user message: {_when(o['last_user_message_at'])}; last bot message: {_when(o['last_bot_message_at'])}",
        f"check-ins: {'on' if o['checkins_enabled'] else 'off'}, {o['checkins_unanswered']} unanswered, "
        f"last {_when(o['last_checkin_at'])}; time zone: {o['timezone'] or 'default'}",
        f"memory: {o['memory_summary'] or '(nothing summarized yet)'}",
        "transitions:",
    ]
    for t in report.transitions:
        scores = ""
        if t["sentiment_negative"] is not None:
            scores = f", negative {t['sentiment_negative']:.2f}, positive {t['sentiment_positive']:.2f}"
        lines.append(
            f"  {_when(t['created_at'])}  {t['from_state'] or '-'} -> {t['to_state']}  "
            f"[{t['trigger']}] at message {t['user_messages']}{scores}"
        )
    lines.append("messages:")
    for m in report.messages:
        text = m["text"] if len(m["text"]) <= 160 else m["text"][:157] + "..."
        lines.append(f"  {_when(m['created_at'])}  {m['role']}/{m['kind']}: {text}")
    return "\n".join(lines)


def format_stats(report: StatsReport) -> str:
    total = sum(report.states.values())
    lines = [f"conversations: {total}"]
    lines += [f"  {state}: {count}" for state, count in sorted(report.states.items())]
    lines.append("per day (UTC): user messages / bot messages / check-ins")
    lines += [f"  {day}: {users} / {bots} / {checkins}" for day, users, bots, checkins in report.days]
    lines.append(f"messages waiting to be sent to Telegram: {report.pending_sends}")
    lines.append(_trouble("updates set aside (dead_letter_log)", report.dead_letters))
    lines += [
        f"  {_when(d['created_at'])}  update {d['update_id']} chat {d['chat_id']}"
        f" after {d['attempts']} tries: {_short(d['error'])}"
        for d in report.dead_letters
    ]
    lines.append(_trouble("sends given up (failed_send_log)", report.failed_sends))
    lines += [
        f"  {_when(f['given_up_at'])}  chat {f['chat_id']} {f['method']}"
        f" after {f['attempts']} tries: {_short(f['error'])}"
        for f in report.failed_sends
    ]
    return "\n".join(lines)


def _trouble(title: str, rows: list[dict[str, Any]]) -> str:
    total = rows[0]["total"] if rows else 0
    shown = f", newest {len(rows)} below" if total > len(rows) else ""
    return f"{title} in the same days: {total}{shown}"


def _short(error: str | None, limit: int = 160) -> str:
    error = " ".join((error or "").split())
    return error if len(error) <= limit else error[: limit - 1] + "…"
