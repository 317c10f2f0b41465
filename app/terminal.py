"""`aifriend chat`: the same pipeline as the bot, in a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from app.emulators.tgi import TGIEmulator
from app.services.delivery import DeliveryQueue
from app.services.drafts import DraftOutcome, DraftPreview
from app.services.friend import Friend
from app.services.outbox import SendOutcome
from app.settings import Settings
from llm.tgi import TGIChatModel
from storage.outbox import QueuedSend
from storage.rows import UserInfo

TERMINAL_CHAT_ID = -1  # Telegram never uses negative ids for private chats
COMMANDS = "/clear starts over, /quit leaves"


class TerminalTransport:
    """The outbox's sends, printed; a reply being written is printed as it grows (its drafts)."""

    def __init__(self) -> None:
        self._shown: dict[int, str] = {}  # what the current draft put on screen, per chat

    async def draft(self, chat_id: int, draft_id: int, text: str) -> DraftOutcome:
        shown = self._shown.get(chat_id, "")
        if not text.startswith(shown):  # the writer started over: a new line
            print(flush=True)
            shown = ""
        print(("friend> " if not shown else "") + text[len(shown) :], end="", flush=True)
        self._shown[chat_id] = text
        return DraftOutcome("shown")

    async def deliver(self, send: QueuedSend) -> SendOutcome:
        text = str(send.payload.get("text", ""))
        shown = self._shown.pop(send.chat_id, "")
        if shown and text.startswith(shown):
            print(text[len(shown) :], flush=True)
        else:
            if shown:
                print(flush=True)
            print(f"friend> {text}", flush=True)
        return SendOutcome("sent")

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        yield


async def missing_model_server(settings: Settings) -> str | None:
    """What is missing, in one sentence with the ways on, when no model server answers at TGI_URL."""
    if settings.llm_backend != "tgi":
        return None
    probe = TGIChatModel(settings.tgi_url, timeout=5.0)
    try:
        ok, detail = await probe.health()
    finally:
        await probe.close()
    if ok:
        return None
    return (
        f"no model server answers at {settings.tgi_url} (TGI_URL: {detail}); start one there or point TGI_URL "
        "at yours, or run a model in this process with LLM_BACKEND=transformers LLM_MODEL=/path/to/model, or "
        "just try it with `aifriend chat --emulated-model` (an echo that says it is emulated)"
    )


@contextlib.asynccontextmanager
async def emulated_model(settings: Settings, wanted: bool) -> AsyncIterator[TGIChatModel | None]:
    """With `--emulated-model`: the built-in TGI emulator on loopback and a client for it."""
    if not wanted:
        yield None
        return
    emulator = TGIEmulator(max_input_tokens=2047, max_total_tokens=2048)
    await emulator.start()
    print(f"[emulated model at {emulator.url}: it echoes what you write, and says so]", flush=True)
    try:
        yield TGIChatModel(emulator.url, timeout=settings.llm_timeout.total_seconds())
    finally:
        await emulator.stop()


async def chat(friend: Friend, *, chat_id: int = TERMINAL_CHAT_ID) -> int:
    user = UserInfo(user_id=chat_id, username="terminal")
    transport = TerminalTransport()
    outbox = DeliveryQueue(friend.database, transport, worker=friend.rules.worker)
    # A terminal has no rate limits: print the reply as it grows, piece by piece.
    outbox.drafts = DraftPreview(transport, every=0.0, min_new_chars=1, budget=10_000)
    print(f"Talking to {friend.persona.name} ({COMMANDS}).", flush=True)
    await outbox.flush(chat_id)  # anything a previous session left unprinted
    stage = None
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/clear":
            async with friend.commands.handling(chat_id, user) as unit:
                assert unit is not None
                stage = await friend.commands.reset(unit)
            print(f"[stage: {stage.value}, history cleared]", flush=True)
            continue
        received = await friend.receive(chat_id, user, text)
        if received.stage is not None and received.stage != stage:
            causes = ", ".join(
                f"{t.trigger.value} at message {t.messages}" for t in received.transitions if t.from_stage is not None
            )
            print(f"[stage: {received.stage.value}{f' ({causes})' if causes else ''}]", flush=True)
            stage = received.stage
        if received.responder:
            await friend.responder.respond(chat_id, outbox, received.context)
    await friend.background.drain()
    return 0
