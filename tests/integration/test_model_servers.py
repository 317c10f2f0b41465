"""One model client for every server that speaks the OpenAI chat route: TGI, vLLM, SGLang and
llama.cpp's server, each as the emulator's dialect of it, through the real `openai` client over
HTTP. Detection, limits, token counts, conversation, streaming, "prompt too long", LoRA adapters,
and the per-chat routing key on replies and summaries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

import app
from app.emulators.echo import template, token_count
from app.emulators.tgi import TGIEmulator
from app.persona import load_persona
from app.settings import SettingsError, load_settings
from app.wiring import check_adapters
from llm.errors import GenerationFailedError, PromptTooLongError
from llm.routing import GATEWAY_HEADER, SESSION_HEADER, for_chat, routing_key, secret_from
from llm.tgi import TGIChatModel
from llm.types import ChatMessage, GenerationParams, estimate_prompt_tokens
from storage.database import Database
from storage.rows import UserInfo
from tests.helpers import RecordingOutbox, build_friend, serving

DIALECTS = ("tgi", "vllm", "sglang", "llamacpp")
PROMPT = [ChatMessage("system", "You are a friend."), ChatMessage("user", "Tell me about your day, please.")]


@pytest.fixture(params=DIALECTS)
async def server(request: pytest.FixtureRequest) -> AsyncIterator[TGIEmulator]:
    emulator = TGIEmulator(
        max_input_tokens=2047, max_total_tokens=2048, dialect=request.param, adapters=frozenset({"calm"})
    )
    async with serving(emulator):
        yield emulator


@pytest.fixture
async def model(server: TGIEmulator) -> AsyncIterator[TGIChatModel]:
    client = TGIChatModel(server.url, backoff=0.01)  # MODEL_SERVER=auto
    try:
        yield client
    finally:
        await client.close()


async def test_the_server_is_recognised_and_its_limits_read(model: TGIChatModel, server: TGIEmulator) -> None:
    limits = await model.limits()
    assert model.server == server.dialect
    assert (limits.max_input_tokens, limits.max_total_tokens) == (2047, 2048)


async def test_tokens_are_counted_by_the_servers_route_or_estimated(model: TGIChatModel, server: TGIEmulator) -> None:
    await model.limits()
    payload = [{"role": m.role, "content": m.content} for m in PROMPT]
    expected = {
        "tgi": token_count(template(payload)),  # /chat_tokenize: the templated prompt, exactly
        "vllm": token_count(template(payload)),  # /tokenize with the messages
        "llamacpp": token_count("\n".join(m.content for m in PROMPT)) + 8 * len(PROMPT),  # the text, + markers
        "sglang": estimate_prompt_tokens(PROMPT),  # no tokenize route we use: the estimate
    }
    assert await model.count_tokens(PROMPT) == expected[server.dialect]


async def test_a_conversation_streams_and_remembers_through_every_server(server: TGIEmulator, db: Database) -> None:
    friend = build_friend(db, server)
    outbox = RecordingOutbox(db)
    try:
        user = UserInfo(7001, language_code="en")
        for text in ("Hi, I'm Ana and I grow tomatoes", "What do you think about gardening?"):
            [reply] = await friend.handle_text(7001, user, text, outbox)
            assert reply.kind == "reply" and reply.text.startswith("[emulated model]"), reply
        assert [path for path, _ in server.requests].count("/v1/chat/completions") == 2
        assert "Ana" in server.chat_requests()[-1]["messages"][-3]["content"], "the history went with it"
        pieces = [piece async for piece in friend.model.stream(PROMPT, GenerationParams(max_new_tokens=20))]
        assert "".join(pieces).startswith("[emulated model] Tell me about your day")
    finally:
        await friend.model.close()


async def test_each_servers_own_prompt_too_long_is_recognised(model: TGIChatModel, server: TGIEmulator) -> None:
    await model.limits()
    server.max_input_tokens, server.max_total_tokens = 15, 16  # restarted smaller since the client looked
    with pytest.raises(PromptTooLongError):
        await model.complete(PROMPT, GenerationParams(max_new_tokens=8))
    assert server.rejected == 1, "the server's own refusal, in its own words, was read as 'too long'"


EXPECTED_MODEL = {"tgi": "calm", "vllm": "calm", "sglang": "aifriend/emulated-echo:calm"}


async def test_a_stages_lora_adapter_is_chosen_the_servers_way(model: TGIChatModel, server: TGIEmulator) -> None:
    params = GenerationParams(max_new_tokens=20, adapter_id="calm")
    if server.dialect == "llamacpp":
        with pytest.raises(GenerationFailedError, match="cannot choose an adapter per request"):
            await model.complete(PROMPT, params)
        return
    await model.complete(PROMPT, params)
    assert server.chat_requests()[-1]["model"] == EXPECTED_MODEL[server.dialect]
    await model.complete(PROMPT, GenerationParams(max_new_tokens=20))
    assert server.chat_requests()[-1]["model"] == ("tgi" if server.dialect == "tgi" else "aifriend/emulated-echo")


def test_llamacpp_with_a_persona_that_names_adapters_is_a_start_up_error(tmp_path: object) -> None:
    persona_file = tmp_path / "persona.toml"  # type: ignore[operator]
    text = (
        (Path(app.__file__).parent / "default_persona.toml")
        .read_text()
        .replace("[stages.close]\n", '[stages.close]\nadapter_id = "close-lora"\n')
    )
    persona_file.write_text(text)
    settings = load_settings(model_server="llamacpp", bot_token=SecretStr("1:x"), persona_file=persona_file)
    with pytest.raises(SettingsError, match=r"MODEL_SERVER=llamacpp.*close-lora"):
        check_adapters(settings, load_persona(persona_file))
    check_adapters(load_settings(model_server="vllm", persona_file=persona_file), load_persona(persona_file))


async def test_replies_and_summaries_carry_the_chats_opaque_routing_key(tgi: TGIEmulator, db: Database) -> None:
    server = tgi  # the headers are the client's, the same for every server
    secret = secret_from("1:token")
    friend = build_friend(db, None, model=TGIChatModel(server.url, backoff=0.01, routing_secret=secret))
    outbox = RecordingOutbox(db)
    try:
        for chat in (81, 82):
            for n in range(2):
                await friend.handle_text(chat, UserInfo(chat), f"message {n} from chat {chat}", outbox)
        with for_chat(81):  # a summary for chat 81, as the memory keeper writes one
            await friend.model.complete(PROMPT, GenerationParams(max_new_tokens=10))
    finally:
        await friend.model.close()
    keys = [h.get(SESSION_HEADER.lower()) for h in server.headers]
    assert keys == [routing_key(81, secret)] * 2 + [routing_key(82, secret)] * 2 + [routing_key(81, secret)]
    assert all(h[GATEWAY_HEADER.lower()] == h[SESSION_HEADER.lower()] for h in server.headers), "the gateway's own"
    assert all("81" not in key and "82" not in key and len(key) == 32 for key in keys if key)
    assert routing_key(81, secret_from("another-token")) != routing_key(81, secret)


@pytest.fixture
async def gateway(tgi: TGIEmulator) -> AsyncIterator[str]:
    """A gateway like the SGLang Model Gateway: it passes the chat route, answers /v1/models itself,
    and has no /info."""

    async def chat(request: web.Request) -> web.StreamResponse:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{tgi.url}/v1/chat/completions",
                data=await request.read(),
                headers={"Content-Type": "application/json"},
            ) as answer,
        ):
            return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")

    async def models(_: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "unknown", "object": "model", "owned_by": "local"}]}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_behind_a_gateway_that_hides_the_servers_limits_replies_still_come(
    gateway: str, tgi: TGIEmulator, db: Database
) -> None:
    """The issue's case: before, every reply behind the gateway was the fallback line."""
    friend = build_friend(db, None, model=TGIChatModel(gateway, backoff=0.01, context_tokens=4096))
    outbox = RecordingOutbox(db)
    try:
        replies = [await friend.handle_text(91, UserInfo(91), f"hello number {n}", outbox) for n in range(3)]
        assert [r[0].kind for r in replies] == ["reply"] * 3
        limits = await friend.model.limits()
        assert (limits.max_input_tokens, limits.max_total_tokens) == (4095, 4096), "MODEL_MAX_TOKENS"
    finally:
        await friend.model.close()
    untold = TGIChatModel(gateway, backoff=0.01)
    try:
        assert (await untold.limits()).max_total_tokens == 4096 and untold.server == "tgi"
    finally:
        await untold.close()
