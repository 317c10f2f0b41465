"""The TGI backend through the openai client against the emulator: limits, retries, errors, streams."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from app.emulators.tgi import TGIEmulator, template, tokenize
from llm.errors import GenerationFailedError, ModelUnavailableError, PromptTooLongError
from llm.tgi import TGIChatModel
from llm.types import ChatMessage, GenerationParams

PROMPT = [ChatMessage("system", "be kind"), ChatMessage("user", "hello there friend")]


@pytest.fixture
async def model(tgi: TGIEmulator) -> AsyncIterator[TGIChatModel]:
    backend = TGIChatModel(tgi.url, backoff=0.01)
    yield backend
    await backend.close()


async def test_limits_come_from_info_once(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.max_input_tokens, tgi.max_total_tokens = 999, 1000
    limits = await model.limits()
    await model.limits()
    assert (limits.max_input_tokens, limits.max_total_tokens) == (999, 1000)


async def test_token_counts_are_exact_where_the_server_tokenizes(model: TGIChatModel) -> None:
    payload = [{"role": m.role, "content": m.content} for m in PROMPT]
    assert await model.count_tokens(PROMPT) == len(tokenize(template(payload)))


async def test_without_a_tokenizer_the_count_is_an_estimate(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.offer_tokenize = False
    assert await model.count_tokens(PROMPT) > 0
    assert (await model.complete(PROMPT, GenerationParams(max_new_tokens=20))).text.startswith("[emulated model]")


async def test_max_new_tokens_is_clamped_to_what_the_server_allows(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.max_input_tokens, tgi.max_total_tokens = 59, 60
    completion = await model.complete(PROMPT, GenerationParams(max_new_tokens=500))
    assert completion.prompt_tokens + completion.max_new_tokens == 60
    assert tgi.rejected == 0


async def test_a_prompt_over_the_limit_is_never_sent(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.max_input_tokens, tgi.max_total_tokens = 19, 20
    with pytest.raises(PromptTooLongError):
        await model.complete(PROMPT * 3, GenerationParams(max_new_tokens=10))
    assert tgi.chat_requests() == []


async def test_overload_and_unavailability_are_retried_then_reported(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.fail_next(429, "overloaded", times=2)
    assert (await model.complete(PROMPT, GenerationParams())).text
    assert len(tgi.chat_requests()) == 3
    tgi.fail_next(503, "unhealthy", times=3)
    with pytest.raises(ModelUnavailableError):
        await model.complete(PROMPT, GenerationParams())


async def test_validation_errors_are_not_retried(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.fail_next(422, "validation", "Input validation error: `inputs` must have less than 10 tokens")
    with pytest.raises(PromptTooLongError):
        await model.complete(PROMPT, GenerationParams())
    assert len(tgi.chat_requests()) == 1


async def test_a_generation_error_is_reported_without_retry(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.fail_next(424, "generation", "Request failed during generation: CUDA out of memory")
    with pytest.raises(GenerationFailedError):
        await model.complete(PROMPT, GenerationParams())
    assert len(tgi.chat_requests()) == 1


async def test_streaming_yields_the_reply(model: TGIChatModel) -> None:
    pieces = [piece async for piece in model.stream(PROMPT, GenerationParams(max_new_tokens=30))]
    whole = await model.complete(PROMPT, GenerationParams(max_new_tokens=30))
    assert len(pieces) > 1 and "".join(pieces) == whole.text, "the pieces add up to the same reply"


def _responses_alive() -> list[httpx2.Response]:
    gc.collect()
    return [thing for thing in gc.get_objects() if type(thing) is httpx2.Response]


def _held_by(responses: list[httpx2.Response]) -> list[str]:
    """What still refers to each response, for a failure to say where a leak is."""
    return [
        ", ".join(sorted({type(r).__name__ for r in gc.get_referrers(response) if r is not responses})) or "nothing"
        for response in responses
    ]


async def test_streamed_replies_are_not_kept_after_their_stream_ends(model: TGIChatModel, tgi: TGIEmulator) -> None:
    """A client that keeps each streamed response until it is closed grows without bound in a bot
    that streams its replies (huggingface_hub's did: 1.6 GB over 100,000 chats). Finished,
    abandoned or failed, a stream here keeps nothing."""
    params = GenerationParams(max_new_tokens=20)
    before = len(_responses_alive())
    for _ in range(20):
        assert "".join([piece async for piece in model.stream(PROMPT, params)]).startswith("[emulated model]")
    for _ in range(20):
        pieces = model.stream(PROMPT, params)
        async for _ in pieces:
            break  # the caller stops reading half-way
        await pieces.aclose()  # type: ignore[attr-defined]
    tgi.break_streams = 5
    for _ in range(5):
        with pytest.raises(GenerationFailedError):
            async for _ in model.stream(PROMPT, params):
                pass
    alive = _responses_alive()
    # the last error may hold one
    assert len(alive) - before <= 3, f"45 streams kept {len(alive) - before} responses, held by {_held_by(alive)}"
    assert (await model.complete(PROMPT, params)).text.startswith("[emulated model]")


async def test_an_error_inside_a_stream_is_an_error(model: TGIChatModel, tgi: TGIEmulator) -> None:
    tgi.break_streams = 1
    with pytest.raises(GenerationFailedError):
        async for _ in model.stream(PROMPT, GenerationParams(max_new_tokens=30)):
            pass


async def test_adapter_and_sampling_settings_reach_the_server(model: TGIChatModel, tgi: TGIEmulator) -> None:
    params = GenerationParams(
        temperature=0.5, top_p=0.8, max_new_tokens=40, repetition_penalty=1.2, adapter_id="friend-lora"
    )
    await model.complete(PROMPT, params)
    body = tgi.chat_requests()[-1]
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == ("friend-lora", 0.5, 0.8, 40)
    assert body["frequency_penalty"] == pytest.approx(0.2)


async def test_an_unreachable_server_is_unavailable(tgi: TGIEmulator) -> None:
    backend = TGIChatModel("http://127.0.0.1:9", backoff=0.01)
    with pytest.raises(ModelUnavailableError, match=r"127\.0\.0\.1:9"):
        await backend.complete(PROMPT, GenerationParams())
    await backend.close()


async def test_the_api_key_reaches_the_server_and_a_wrong_one_says_what_to_set(tgi: TGIEmulator) -> None:
    tgi.api_key = "tgi-key-1"
    keyed = TGIChatModel(tgi.url, backoff=0.01, api_key="tgi-key-1")
    keyless = TGIChatModel(tgi.url, backoff=0.01, attempts=1)
    try:
        assert (await keyed.complete(PROMPT, GenerationParams(max_new_tokens=20))).text.startswith("[emulated")
        assert tgi.unauthorized == 0
        with pytest.raises(ModelUnavailableError, match="TGI_API_KEY"):
            await keyless.complete(PROMPT, GenerationParams(max_new_tokens=20))
        assert (await keyless.health())[0], "/health needs no key: probes and TGI's own healthcheck use it"
    finally:
        await keyed.close()
        await keyless.close()


async def test_without_a_key_the_machines_hugging_face_token_is_not_sent(
    tgi: TGIEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A developer logged in to the Hub (or a host with HF_TOKEN for TGI's downloads) runs the bot
    without TGI_API_KEY: huggingface_hub would hand that token to whatever TGI_URL points at."""
    monkeypatch.setenv("HF_TOKEN", "hf_owner_secret_1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    keyless = TGIChatModel(tgi.url, backoff=0.01)
    keyed = TGIChatModel(tgi.url, backoff=0.01, api_key="tgi-key-1")
    try:
        assert (await keyless.complete(PROMPT, GenerationParams(max_new_tokens=20))).text.startswith("[emulated")
        assert tgi.authorizations == [None]
        await keyed.complete(PROMPT, GenerationParams(max_new_tokens=20))
        assert tgi.authorizations[1:] == ["Bearer tgi-key-1"]
    finally:
        await keyless.close()
        await keyed.close()


async def test_a_tgi_restarted_with_other_limits_is_noticed(model: TGIChatModel, tgi: TGIEmulator) -> None:
    assert (await model.limits()).max_total_tokens == 4096
    port = int(tgi.url.rsplit(":", 1)[1])
    await tgi.stop()
    assert not (await model.health())[0]
    with pytest.raises(ModelUnavailableError):
        await model.complete(PROMPT, GenerationParams(max_new_tokens=20))
    tgi.max_input_tokens, tgi.max_total_tokens = 1023, 1024
    await tgi.start(port=port)
    await model.complete(PROMPT, GenerationParams(max_new_tokens=20))
    assert (await model.limits()).max_total_tokens == 1024


async def test_limits_are_read_again_after_a_while(
    model: TGIChatModel, tgi: TGIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await model.limits()
    tgi.max_input_tokens, tgi.max_total_tokens = 2047, 2048  # a restart the client never saw fail
    assert (await model.limits()).max_total_tokens == 4096
    monkeypatch.setattr("llm.tgi.INFO_TTL", 0.0)
    assert (await model.limits()).max_total_tokens == 2048
