"""What the bot does to its own runtime after start-up, so replies are not held up by it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram.methods.base import Response
from aiogram.types import Message

from app.heap import settle_heap
from app.telegram.responses import hold_response_models


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_settling_the_heap_leaves_the_collector_only_what_comes_after(thawed: None) -> None:
    walked_before = len(gc.get_objects())
    settle_heap()
    assert gc.get_freeze_count() >= walked_before * 0.9
    fresh = [{"n": n} for n in range(1000)]
    assert len(gc.get_objects()) < len(fresh) + walked_before * 0.1


def _parse_class(answer: Any) -> type[Any]:
    """What aiogram's `check_response` does on every Bot API answer (inside a function)."""
    return Response[answer]


def test_the_classes_that_parse_telegram_answers_survive_garbage_collection() -> None:
    hold_response_models()
    for answer in (Message, bool, list[Any]):
        built = weakref.ref(_parse_class(answer))
        gc.collect()
        assert built() is not None, f"Response[{answer}] was freed and would be built again"
        assert _parse_class(answer) is built()
