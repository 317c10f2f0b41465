"""One bad update never stops the bot for everyone: it is cleaned, ignored or set aside."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot, until_idle
from tests.faults.tally import numbered, numbers_in, tally
from tests.postgres import fetch
from tests.waiting import held_within

BYSTANDERS = range(3001, 3006)
POISONED = 3100


def _poisons(telegram: TelegramEmulator) -> dict[str, dict[str, Any]]:
    def message(chat_id: int, **changes: Any) -> dict[str, Any]:
        base = telegram.message(chat_id, text=f"poison for {chat_id}")
        for key, value in changes.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return base

    nul_user = {"id": POISONED, "is_bot": False, "first_name": "Nul\x00Byte", "username": "nul"}
    surrogate_user = {"id": POISONED + 1, "is_bot": False, "first_name": "Ann", "username": "bad\ud800name"}
    return {
        "nul_in_first_name": {"message": message(POISONED, **{"from": nul_user})},
        "lone_surrogate_in_username": {
            "message": message(POISONED + 1, **{"from": surrogate_user}, chat={"id": POISONED + 1, "type": "private"})
        },
        "chat_id_outside_bigint": {
            "message": message(
                2**63,
                chat={"id": 2**63, "type": "private"},
                **{"from": {"id": 2**63, "is_bot": False, "first_name": "Big"}},
            )
        },
        "unknown_update_type": {"business_future_thing": {"chat": {"id": POISONED + 2, "type": "private"}}},
        "message_without_date": {
            "message": message(POISONED + 3, date=None, chat={"id": POISONED + 3, "type": "private"})
        },
        "from_is_not_an_object": {
            "message": message(POISONED + 4, **{"from": "alice"}, chat={"id": POISONED + 4, "type": "private"})
        },
    }


async def test_poison_updates_leave_every_other_chat_answered_and_are_set_aside(
    telegram: TelegramEmulator, tgi: TGIEmulator, database_url: str, tmp_path: Path
) -> None:
    sent = dict.fromkeys(BYSTANDERS, 0)
    pushed: dict[tuple[int, int], int] = {}
    async with running_bot(telegram, tgi, database_url, tmp_path, "--no-scheduler"):
        telegram.user_sends(BYSTANDERS[0], "warm up")
        await telegram.wait_for(BYSTANDERS[0], 1, patience=60)
        telegram.sent[BYSTANDERS[0]].clear()
        poisons = _poisons(telegram)
        for round_number in range(16):
            if round_number == 2:
                for update in poisons.values():
                    telegram.push_raw(update)
            for chat in BYSTANDERS:
                pushed[(chat, sent[chat])] = telegram.user_sends(chat, numbered(sent[chat], chat))
                sent[chat] += 1
            await asyncio.sleep(0.5)
        await held_within(lambda: not tally(telegram, sent).lost, 15)  # what is lost then is asserted below
        for chat in (POISONED, POISONED + 3, POISONED + 4):
            await telegram.wait_for(chat, 1, patience=10)
        await until_idle(telegram, database_url)

    result = tally(telegram, sent)
    assert (result.lost, result.duplicates, result.order_violations) == (0, 0, 0), result.line()
    latencies = []
    for chat in BYSTANDERS:
        for reply in telegram.sent[chat]:
            for n in numbers_in(reply["text"], chat):
                latencies.append(reply["received_at"] - telegram.pushed_at[pushed[(chat, n)]])
    assert max(latencies) < 5.0, f"a bystander waited {max(latencies):.1f} s"

    # Cleanable input is cleaned and answered like any message.
    assert "poison for" in telegram.sent[POISONED][0]["text"]
    assert "poison for" in telegram.sent[POISONED + 1][0]["text"]
    names = await fetch(
        database_url, "SELECT first_name, username FROM users WHERE id IN ($1, $2) ORDER BY id", POISONED, POISONED + 1
    )
    assert [tuple(n) for n in names] == [("NulByte", "nul"), ("Ann", "bad\ufffdname")]
    # What cannot be read is set aside for operators, and the user hears so when they can be told.
    dead = await fetch(database_url, "SELECT update_id, chat_id, error, attempts, raw FROM dead_letter_log ORDER BY id")
    assert len(dead) == 3, [tuple(d) for d in dead]
    by_chat = {d["chat_id"]: d for d in dead}
    assert set(by_chat) == {None, POISONED + 3, POISONED + 4}
    assert "bigint" in by_chat[None]["error"] and str(2**63) in by_chat[None]["raw"]
    assert "date" in by_chat[POISONED + 3]["error"]
    for chat in (POISONED + 3, POISONED + 4):
        assert "couldn't read" in telegram.sent[chat][0]["text"]
        assert len(telegram.sent[chat]) == 1
    assert telegram.sent[POISONED + 2] == [], "an unknown update type is ignored"
