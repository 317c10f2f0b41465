"""The draft throttle and the terminal's live printing, without a network."""

from __future__ import annotations

import asyncio

import pytest

from app.services.drafts import DraftOutcome, DraftPreview
from app.terminal import TerminalTransport
from storage.outbox import QueuedSend
from tests.waiting import until


class Recorder:
    def __init__(self, answer: DraftOutcome | None = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.answer = answer or DraftOutcome("shown")

    async def draft(self, chat_id: int, draft_id: int, text: str) -> DraftOutcome:
        self.calls.append((chat_id, text))
        return self.answer


async def test_one_chat_gets_at_most_one_draft_per_interval_and_only_for_new_text() -> None:
    recorder = Recorder()
    preview = DraftPreview(recorder, every=0.2, min_new_chars=5)
    text = ""
    for word in ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]:
        text += word + " "
        preview.show(1, 7, text)
        await asyncio.sleep(0.05)
    await preview.finish(1)
    assert 2 <= len(recorder.calls) <= 4, recorder.calls
    assert recorder.calls[0][1] == "one ", "the first piece is shown at once"
    assert all(b.startswith(a) for (_, a), (_, b) in zip(recorder.calls, recorder.calls[1:], strict=False))


async def test_the_process_budget_is_shared_by_all_chats() -> None:
    recorder = Recorder()
    preview = DraftPreview(recorder, every=0.0, min_new_chars=0, budget=5)
    for chat in range(50):
        preview.show(chat, 1, "hello there")
    assert preview.skipped == 45
    await until(lambda: len(recorder.calls) == 5, what="the five drafts the budget allows")


async def test_an_unknown_method_turns_drafts_off_for_the_process() -> None:
    preview = DraftPreview(Recorder(DraftOutcome("unsupported", error="404")), every=0.0)
    preview.show(1, 1, "hello")
    await preview.finish(1)
    assert not preview.enabled
    preview.show(2, 1, "hello")  # nothing more is tried
    assert preview.sent == 0 and 2 not in preview._chats


async def test_a_long_reply_shows_the_part_being_written() -> None:
    recorder = Recorder()
    preview = DraftPreview(recorder, every=0.0, min_new_chars=0)
    preview.show(1, 1, "a" * 4096 + "b" * 10)
    await preview.finish(1)
    assert recorder.calls == [(1, "b" * 10)]


async def test_the_terminal_prints_a_reply_as_it_grows_and_never_twice(capsys: pytest.CaptureFixture[str]) -> None:
    terminal = TerminalTransport()
    for so_far in ("Hello", "Hello there", "Hello there, friend"):
        await terminal.draft(-1, 1, so_far)
    assert capsys.readouterr().out == "friend> Hello there, friend"
    final = QueuedSend(1, -1, None, True, "sendMessage", {"text": "Hello there, friend. How are you?"}, 1, None)  # type: ignore[arg-type]
    await terminal.deliver(final)
    assert capsys.readouterr().out == ". How are you?\n"


async def test_the_process_budget_holds_in_any_second_even_when_many_chats_start_together() -> None:
    """A token bucket that starts full lets through its size at once and as many again within the
    same second: drafts burst to twice the budget. No second may see more than the budget."""
    recorder = Recorder()
    preview = DraftPreview(recorder, every=0.0, min_new_chars=0, budget=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 2.5:
        for chat in range(20):
            # `show` decides at once; the draft's own task may run later (on a loaded machine, after
            # later offers), so each draft carries the moment it was offered and let through.
            preview.show(chat, 1, f"hello at {loop.time()!r}")
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
    for chat in range(20):
        await preview.finish(chat)
    shown = [float(text.removeprefix("hello at ")) for _, text in recorder.calls]
    busiest = max(sum(1 for t in shown if start <= t < start + 1.0) for start in shown)
    assert len(shown) >= 20 and busiest <= 20, f"{busiest} drafts in one second"
