"""Prompt building with recalled lines and stage notes: where they go, how many fit, what they
never displace, and that each prompt starts with the whole of the previous one."""

from __future__ import annotations

from datetime import date

from app.prompt import (
    RECALL_SHARE,
    Recalled,
    StageShift,
    Turn,
    build_prompt,
    build_prompt_with_recall,
    with_note,
)
from llm.types import ChatMessage, estimate_prompt_tokens, estimate_tokens

SYSTEM = ChatMessage("system", "You are a friend.")
HEADING = "(Earlier:)"


def _turns(count: int, first_id: int = 100) -> list[Turn]:
    return [
        Turn("user" if n % 2 == 0 else "assistant", f"line number {n} about the weather", first_id + n)
        for n in range(count)
    ]


def test_recalled_lines_go_before_the_last_message_oldest_first_and_leave_the_start_alone() -> None:
    recalled = [
        Recalled(7, "my kayak is called Blue Heron", date(2026, 3, 3)),
        Recalled(3, "I live in Porto", date(2026, 3, 1)),
    ]
    prompt, note = build_prompt_with_recall(
        SYSTEM, _turns(5), budget_tokens=2000, recalled=recalled, recall_heading=HEADING
    )
    plain = build_prompt(SYSTEM, _turns(5), budget_tokens=2000)
    assert prompt[:-1] == plain[:-1], "everything before the last message is what it would have been"
    last = prompt[-1].content
    assert note is not None and last == with_note(plain[-1].content, note)
    assert note.startswith("<recalled>\n" + HEADING) and note.endswith("</recalled>")
    assert last.index("Porto") < last.index("Blue Heron")
    assert "01 March 2026" in last


def test_lines_the_turns_already_show_are_not_repeated() -> None:
    turns = _turns(5)
    shown = Recalled(turns[1].message_id, turns[1].text, date(2026, 3, 3))
    said_again = Recalled(5, turns[2].text, date(2026, 3, 3))
    prompt, note = build_prompt_with_recall(
        SYSTEM, turns, budget_tokens=2000, recalled=[shown, said_again], recall_heading=HEADING
    )
    assert note is None and HEADING not in prompt[-1].content


def test_recall_takes_only_what_the_recent_turns_leave_and_at_most_its_share() -> None:
    many = [Recalled(n, f"an old story number {n} " + "with many words " * 5, date(2026, 1, 1)) for n in range(1, 40)]
    budget = 1000
    prompt, note = build_prompt_with_recall(
        SYSTEM, _turns(7), budget_tokens=budget, recalled=many, recall_heading=HEADING
    )
    assert note is not None and 0 < estimate_tokens(note) <= budget * RECALL_SHARE + 10
    assert estimate_prompt_tokens(prompt) <= budget

    full, _ = build_prompt_with_recall(SYSTEM, _turns(200), budget_tokens=budget, recalled=many, recall_heading=HEADING)
    unrecalled = build_prompt(SYSTEM, _turns(200), budget_tokens=budget)
    assert len(full) == len(unrecalled), "recent turns keep priority: none was dropped for recall"
    assert estimate_prompt_tokens(full) <= budget


def test_a_turn_shows_its_note_again_in_later_prompts_so_the_prefix_holds() -> None:
    turns = _turns(5)
    first, note = build_prompt_with_recall(
        SYSTEM,
        turns,
        budget_tokens=2000,
        recalled=[Recalled(3, "I live in Porto", date(2026, 3, 1))],
        recall_heading=HEADING,
    )
    assert note is not None
    later_turns = [
        *turns[:-1],
        Turn("user", with_note(turns[-1].text, note), turns[-1].message_id),
        Turn("assistant", "nice", 200),
        Turn("user", "and today?", 201),
    ]
    later = build_prompt(SYSTEM, later_turns, budget_tokens=2000)
    assert later[: len(first)] == first, "the earlier prompt is a prefix of the later one"


def test_a_recalled_line_the_notebook_already_holds_is_left_out() -> None:
    recalled = [
        Recalled(3, "My kayak is called Blue Heron", date(2026, 3, 1)),
        Recalled(4, "I live in Porto near the river", date(2026, 3, 2)),
    ]
    notebook = "They live in Porto, near the river, and work at a bakery."
    _, note = build_prompt_with_recall(
        SYSTEM, _turns(5), budget_tokens=2000, recalled=recalled, recall_heading=HEADING, known=notebook
    )
    assert note is not None and "Blue Heron" in note and "Porto" not in note


PROMPTS = {
    "close": "You are Robin, a close friend. Tease gently. Never claim to be human.",
    "repair": "You are Robin, a friend. They seem upset. Slow down and be kind. Never claim to be human.",
}


def test_a_stage_change_is_a_note_with_what_changed_and_the_prompt_start_stays() -> None:
    turns = _turns(5)
    before, _ = build_prompt_with_recall(
        SYSTEM, turns[:-2], budget_tokens=2000, stage=StageShift("close", "close", PROMPTS)
    )
    upset, note = build_prompt_with_recall(
        SYSTEM, turns, budget_tokens=2000, stage=StageShift("repair", "close", PROMPTS)
    )
    assert note == '<stage name="repair">\nYou are Robin, a friend. They seem upset. Slow down and be kind.\n</stage>'
    assert upset[-1].content == with_note(turns[-1].text, note)
    assert upset[: len(before)] == before, "the system message and the turns before stay as they were"

    noted = [*turns[:-1], Turn("user", with_note(turns[-1].text, note), turns[-1].message_id)]
    still_upset, again = build_prompt_with_recall(
        SYSTEM,
        [*noted, Turn("assistant", "I hear you", 200), Turn("user", "it was a bad day", 201)],
        budget_tokens=2000,
        stage=StageShift("repair", "close", PROMPTS),
    )
    assert again is None, "the stage in view is already repair: no second note"
    assert still_upset[: len(upset)] == upset

    recovered, back = build_prompt_with_recall(
        SYSTEM,
        [*noted, Turn("assistant", "I hear you", 200), Turn("user", "better now, thanks!", 201)],
        budget_tokens=2000,
        stage=StageShift("close", "close", PROMPTS),
    )
    assert back == '<stage name="close">\nYou are Robin, a close friend. Tease gently.\n</stage>'
    assert recovered[: len(upset)] == upset
