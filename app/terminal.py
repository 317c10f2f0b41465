"""`aifriend chat`: the same pipeline as the bot, in a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from app.services.commands import CommandService
from app.services.conversation import ConversationService
from app.services.delivery import DeliveryQueue, SendOutcome
from app.services.drafts import DraftOutcome, DraftPreview
from storage.conversations import UserInfo
from storage.outbox import QueuedSend

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


async def chat(conversation: ConversationService, *, chat_id: int = TERMINAL_CHAT_ID) -> int:
    user = UserInfo(user_id=chat_id, username="terminal")
    transport = TerminalTransport()
    outbox = DeliveryQueue(conversation.database, transport, worker=conversation.worker)
    # A terminal has no rate limits: print the reply as it grows, piece by piece.
    outbox.drafts = DraftPreview(transport, every=0.0, min_new_chars=1, budget=10_000)
    commands = CommandService(conversation)
    print(f"Talking to {conversation.persona.name} ({COMMANDS}).", flush=True)
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
            async with commands.handling(chat_id, user) as unit:
                assert unit is not None
                stage = await commands.reset(unit)
            print(f"[stage: {stage.value}, history cleared]", flush=True)
            continue
        received = await conversation.receive(chat_id, user, text, outbox=outbox)
        if received.stage is not None and received.stage != stage:
            causes = ", ".join(f"{t.trigger.value} at message {t.messages}" for t in received.transitions)
            print(f"[stage: {received.stage.value}{f' ({causes})' if causes else ''}]", flush=True)
            stage = received.stage
        if received.responder:
            await conversation.respond(chat_id, outbox, received.context, received.ahead)
    await conversation.drain()
    return 0
