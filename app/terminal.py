"""`aifriend chat`: the same pipeline as the bot, in a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from app.services.conversation import ConversationService
from storage.conversations import UserInfo

TERMINAL_CHAT_ID = -1  # Telegram never uses negative ids for private chats
COMMANDS = "/clear starts over, /quit leaves"


class TerminalOutbox:
    async def send(self, chat_id: int, text: str) -> int | None:
        print(f"friend> {text}", flush=True)
        return None

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int) -> AsyncIterator[None]:
        yield


async def chat(conversation: ConversationService, *, chat_id: int = TERMINAL_CHAT_ID) -> int:
    user = UserInfo(user_id=chat_id, username="terminal")
    outbox = TerminalOutbox()
    print(f"Talking to {conversation.persona.name} ({COMMANDS}).", flush=True)
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
            stage = await conversation.reset(chat_id, user)
            print(f"[stage: {stage.value}, history cleared]", flush=True)
            continue
        received = await conversation.receive(chat_id, user, text)
        if received.stage is not None and received.stage != stage:
            causes = ", ".join(f"{t.trigger.value} at message {t.messages}" for t in received.transitions)
            print(f"[stage: {received.stage.value}{f' ({causes})' if causes else ''}]", flush=True)
            stage = received.stage
        if received.responder:
            await conversation.respond(chat_id, outbox)
    await conversation.drain()
    return 0
