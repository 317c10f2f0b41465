"""What users would notice, counted from the Bot API emulator: lost, doubled or reordered replies.

Every simulated message is numbered (``m<n> c<chat>``) and the emulated model echoes what it
answers, so each reply names the messages it answers (a burst merged into one reply names
them all). A chat's replies are then checked as a user reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.emulators.telegram import TelegramEmulator
from tests.postgres import fetch

_NUMBERED = re.compile(r"\bm(\d+) c(-?\d+)\b")


def numbered(n: int, chat: int) -> str:
    return f"m{n} c{chat}"


def numbers_in(text: str, chat: int) -> list[int]:
    """The numbered messages of `chat` a reply answers."""
    return [int(n) for n, c in _NUMBERED.findall(text) if int(c) == chat]


@dataclass
class Tally:
    chats: int = 0
    sent: int = 0
    answered: int = 0
    duplicates: int = 0
    order_violations: int = 0
    unanswered: dict[int, list[int]] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # what a duplicate or a reordering looked like

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    def line(self) -> str:
        return (
            f"{self.chats} chats: sent {self.sent}, answered {self.answered}, duplicates {self.duplicates}, "
            f"order violations {self.order_violations}"
            + (f" (e.g. {'; '.join(self.examples[:6])})" if self.examples else "")
        )


def tally(telegram: TelegramEmulator, sent: dict[int, int]) -> Tally:
    """`sent` maps each chat to how many numbered messages its user sent (m0 .. m<count-1>)."""
    result = Tally(chats=len(sent))
    for chat, count in sent.items():
        result.sent += count
        seen_texts: set[str] = set()
        answered: set[int] = set()
        highest = -1
        for message in telegram.sent[chat]:
            text = message.get("text") or ""
            numbers = numbers_in(text, chat)
            if not numbers:
                continue
            if text in seen_texts:
                result.duplicates += 1
                result.examples.append(f"chat {chat}: {text!r} again")
                continue
            seen_texts.add(text)
            if min(numbers) <= highest:
                result.order_violations += 1
                result.examples.append(f"chat {chat}: {numbers} after m{highest}")
            highest = max(highest, *numbers)
            answered.update(numbers)
        result.answered += len(answered & set(range(count)))
        missing = sorted(set(range(count)) - answered)
        if missing:
            result.unanswered[chat] = missing
    return result


async def sends_in_doubt(telegram: TelegramEmulator, database_url: str) -> list[tuple[int, str]]:
    """Sends a dead process leaves unknowable: Telegram shows them, the outbox still owes them.

    Read right after a kill, these are what the next process sends again (at least once is the
    promise where the Bot API gives no idempotency key); any other duplicate is a bug.
    """
    rows = await fetch(
        database_url, "SELECT chat_id, payload->>'text' FROM outbox WHERE status = 'pending' AND method = 'sendMessage'"
    )
    return [
        (chat, text)
        for chat, text in rows
        if any(message.get("text") == text for message in telegram.sent.get(chat, []))
    ]
