"""How many database statements and model calls one reply costs, measured on the real service.

Run: python -m tests.bench.roundtrips   (embedded PostgreSQL, or DATABASE_URL)
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event

from app.persona import load_persona
from app.services.conversation import ConversationService
from app.settings import Settings
from llm.sentiment import VaderScorer
from llm.tgi import TGIChatModel
from storage import migrate
from storage.conversations import UserInfo
from storage.database import connect
from tests.emulators.tgi import TGIEmulator
from tests.helpers import RecordingOutbox
from tests.postgres import fresh_database, server_url


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            tgi = TGIEmulator()
            await tgi.start()
            database = connect(url)
            statements: list[str] = []
            event.listen(database.engine.sync_engine, "before_cursor_execute",
                         lambda *args: statements.append(args[2].split()[0]))
            model = TGIChatModel(tgi.url)
            service = ConversationService(database=database, model=model, scorer=VaderScorer(), persona=load_persona())
            outbox = RecordingOutbox(database)
            user = UserInfo(user_id=1)
            await service.handle_text(1, user, "hello, first message", outbox)  # creates the conversation
            await service.drain()
            for debounce, messages in ((timedelta(0), 20), (Settings.model_fields["reply_debounce"].default, 3)):
                service.reply_debounce = debounce
                for n in range(messages):
                    statements.clear()
                    before = len(tgi.requests)
                    sent = 100 + len(outbox.sent)
                    await service.handle_text(1, user, f"message number {n}", outbox, telegram_message_id=sent,
                                              update_id=1000 + sent)
                    await service.drain()
                    calls = [path for path, _ in tgi.requests[before:]]
                print(f"with REPLY_DEBOUNCE={debounce.total_seconds():g}s:")
                print(f"  database statements per reply (excluding BEGIN/COMMIT): {len(statements)}")
                print(f"  model server requests per reply: {calls.count('/v1/chat/completions')} generation, "
                      f"{calls.count('/chat_tokenize')} token count")
            await service.close()
            await model.close()
            await database.close()
            await tgi.stop()


if __name__ == "__main__":
    asyncio.run(main())
