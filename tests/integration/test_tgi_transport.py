"""huggingface_hub's client on aiohttp (`llm/transport.py`), against the TGI emulator and scripted servers:
connections the server closed, TLS, resets, a proxy's HTML error, refused and silent servers."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.emulators.tgi import TGIEmulator
from llm.errors import ModelUnavailableError
from llm.tgi import TGIChatModel
from llm.types import ChatMessage, GenerationParams
from tests.waiting import until

PROMPT = [ChatMessage("system", "be kind"), ChatMessage("user", "hello there friend")]
SHORT = GenerationParams(max_new_tokens=20)


@pytest.fixture
async def emulator() -> AsyncIterator[TGIEmulator]:
    server = TGIEmulator()
    yield server
    await server.stop()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(emulator: TGIEmulator) -> None:
    """TGI behind a proxy closes idle keep-alive connections; with no retries allowed, the next
    call still goes through, on a new connection."""
    await emulator.start(keepalive_timeout=0.05)
    model = TGIChatModel(emulator.url, attempts=1)
    try:
        assert (await model.complete(PROMPT, SHORT)).text.startswith("[emulated model]")
        await until(lambda: emulator.open_connections == 0, what="the server to close the idle connection")
        assert (await model.complete(PROMPT, SHORT)).text.startswith("[emulated model]")
        assert len(emulator.chat_requests()) == 2
    finally:
        await model.close()


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the bot runs on uvloop where it is installed
def test_tgi_over_tls_is_reached_and_an_untrusted_certificate_is_refused(
    loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path)
    factory = asyncio.new_event_loop if loop == "asyncio" else pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_over_tls(cert, key, monkeypatch))


async def _over_tls(cert: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    emulator = TGIEmulator()
    url = await emulator.start(tls=tls, keepalive_timeout=0.05)
    assert url.startswith("https://")
    try:
        untrusting = TGIChatModel(url, attempts=1)
        try:
            with pytest.raises(ModelUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.complete(PROMPT, SHORT)
        finally:
            await untrusting.close()

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the operator's CA, the standard way
        trusting = TGIChatModel(url, attempts=1)
        try:
            assert (await trusting.complete(PROMPT, SHORT)).text.startswith("[emulated model]")
            # the server closes the idle TLS connection; a new one is made
            await until(lambda: emulator.open_connections == 0, what="the server to close the idle connection")
            chunks = [piece async for piece in trusting.stream(PROMPT, SHORT)]
            assert "".join(chunks).startswith("[emulated model]")
            assert (await trusting.health())[0]
        finally:
            await trusting.close()
    finally:
        await emulator.stop()


async def test_a_server_that_accepts_and_never_answers_is_unavailable_within_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    model = TGIChatModel(f"http://127.0.0.1:{port}", timeout=0.5, attempts=1)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ModelUnavailableError):
            await model.complete(PROMPT, SHORT)
        assert asyncio.get_running_loop().time() - started < 2.0
        assert accepted, "the request reached the server"
    finally:
        await model.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def _answer(body: bytes, status: str = "200 OK", content_type: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


_COMPLETION = (
    b'{"id": "1", "object": "chat.completion", "created": 1, "model": "tgi", "system_fingerprint": "x",'
    b' "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,'
    b' "message": {"role": "assistant", "content": "hello from the far side"}}],'
    b' "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}'
)
_INFO = b'{"max_input_tokens": 4095, "max_total_tokens": 4096, "model_id": "m"}'


async def _scripted(first: bytes | None) -> tuple[asyncio.Server, list[str]]:
    """A model server that answers the first chat request with `first` (None: closes the
    connection mid-answer, after half a status line) and every later one properly."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                path = head.split(b" ")[1].decode()
                seen.append(path)
                if path == "/info":
                    writer.write(_answer(_INFO))
                elif sum(p == "/v1/chat/completions" for p in seen) == 1:
                    if first is None:
                        writer.write(b"HTTP/1.1 2")
                        await writer.drain()
                        writer.transport.abort()  # a reset, as a crashing proxy or pod leaves it
                        return
                    writer.write(first)
                else:
                    writer.write(_answer(_COMPLETION))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, seen


@pytest.mark.parametrize(
    "first",
    [
        None,
        _answer(b"<html><body><h1>502 Bad Gateway</h1></body></html>", "502 Bad Gateway", "text/html"),
    ],
    ids=["reset-mid-answer", "proxy-html-502"],
)
async def test_a_reset_or_a_proxys_html_error_is_retried_and_the_reply_still_comes(first: bytes | None) -> None:
    server, seen = await _scripted(first)
    port = server.sockets[0].getsockname()[1]
    model = TGIChatModel(f"http://127.0.0.1:{port}", attempts=2, backoff=0.01)
    try:
        assert (await model.complete(PROMPT, SHORT)).text == "hello from the far side"
        assert seen.count("/v1/chat/completions") == 2
    finally:
        await model.close()
        server.close()
        await server.wait_closed()


async def test_a_reset_on_every_try_is_reported_as_unavailable_with_its_cause() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    model = TGIChatModel(f"http://127.0.0.1:{port}", attempts=2, backoff=0.01)
    try:
        with pytest.raises(ModelUnavailableError, match="failed 2 times"):
            await model.complete(PROMPT, SHORT)
    finally:
        await model.close()
        server.close()
        await server.wait_closed()
