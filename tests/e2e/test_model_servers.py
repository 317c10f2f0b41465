"""The real `aifriend run` against each model server's dialect, found by itself (MODEL_SERVER=auto)
or named: a Telegram message is answered through TGI, vLLM, SGLang and llama.cpp's server alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from tests.e2e.bot import running_bot
from tests.helpers import serving
from tests.waiting import START_UP


@pytest.fixture(params=["tgi", "vllm", "sglang", "llamacpp"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[TGIEmulator]:
    async with serving(TGIEmulator(dialect=request.param)) as emulator:
        yield emulator


@pytest.mark.parametrize("named", [False, True])
async def test_a_message_is_answered_by_every_kind_of_model_server(
    telegram: TelegramEmulator, server: TGIEmulator, database_url: str, tmp_path: Path, named: bool
) -> None:
    setting = {"MODEL_SERVER": server.dialect} if named else {}
    async with running_bot(telegram, server, database_url, tmp_path, **setting) as bot:
        telegram.user_sends(4242, "hello from the other side")
        [reply] = await telegram.wait_for(4242, 1, patience=START_UP)
        log = bot.log()
    assert reply["text"].startswith("[emulated model] hello from the other side")
    assert f'"server": "{server.dialect}"' in log, "the bot says which server it talks to"
    assert server.headers and server.headers[0].get("x-session-id"), "the chat's routing key went along"
