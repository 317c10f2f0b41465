"""huggingface_hub's client on asyncio's own streams (`llm/transport.py`), against the TGI emulator:
connections the server closed, TLS, refused and silent servers."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm.errors import ModelUnavailableError
from llm.tgi import TGIChatModel
from llm.types import ChatMessage, GenerationParams
from tests.emulators.tgi import TGIEmulator

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
        await asyncio.sleep(0.3)  # the server has closed the connection by now
        assert (await model.complete(PROMPT, SHORT)).text.startswith("[emulated model]")
        assert len(emulator.chat_requests()) == 2
    finally:
        await model.close()


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
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
            await asyncio.sleep(0.3)  # the server closes the idle TLS connection; a new one is made
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
