"""The bot's routers: every filter and handler is a coroutine, so aiogram never hands one to a
worker thread (it runs plain functions and magic filters through asyncio.to_thread, per update)."""

from __future__ import annotations

from aiogram import Router

from app.telegram.handlers import build_router


def _routers(root: Router) -> list[Router]:
    return [root, *(router for child in root.sub_routers for router in _routers(child))]


def test_no_filter_or_handler_of_the_bot_runs_in_a_thread() -> None:
    routers = _routers(build_router())
    threaded = []
    for router in routers:
        for name, observer in router.observers.items():
            for item in observer._handler.filters or []:  # the router's own filters (`router.message.filter`)
                if not item.awaitable:
                    threaded.append(f"{router.name} {name} router filter {item.callback!r}")
            for handler in observer.handlers:
                if not handler.awaitable:
                    threaded.append(f"{router.name} {name} handler {handler.callback!r}")
                threaded += [
                    f"{router.name} {name} filter {f.callback!r}" for f in handler.filters or [] if not f.awaitable
                ]
    assert threaded == []
    assert len(routers) == 8, "admin, access, plans, commands, text, voice and the rest, under the root"
