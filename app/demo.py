"""`aifriend demo`: the real bot, end to end, with nothing to install or configure.

An embedded PostgreSQL (a fresh `aifriend_demo` database under DATA_DIR), the Bot API and
TGI emulators (`app.emulators`) on loopback, and `aifriend run`'s own code in between.
A scripted user talks to it; what happened is printed from the database afterwards.
"""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from app.reports import format_conversation
from app.serve import Stopper, serve
from app.services.operators import OperatorReports
from app.settings import Settings, load_settings
from app.wiring import services
from migrations import schema
from scheduler.timing import QuietHours
from storage.database import with_database
from storage.embedded import embedded_database_url, recreate_database

DEMO_DATABASE = "aifriend_demo"
VOICE_NOTE = Path(__file__).resolve().parent / "emulators" / "voice_note.ogg"  # espeak-ng, OGG/Opus
CHAT = 100
SMALL_TALK = [
    "Hi Robin! I'm Sam.",
    "I just got home from work.",
    "My dog is called Biscuit, he is a beagle.",
    "I work as a nurse at the city hospital.",
    "Night shifts are long but I like my colleagues.",
    "Biscuit chewed my slipper again today.",
    "Do you like music? I play the guitar a bit.",
    "I am learning a song by Fleetwood Mac.",
    "Tomorrow I'm off, finally.",
    "I might take Biscuit to the beach.",
    "The weather is supposed to be sunny.",
    "I also want to bake bread this weekend.",
    "My sister is visiting next month.",
    "She lives in Lisbon.",
    "We haven't seen each other for a year.",
    "I'm thinking of cooking her favourite dish.",
    "It's a fish stew our grandmother made.",
    "I still have the recipe written by hand.",
    "Anyway, how are you today?",
    "I like talking to you.",
    "Biscuit is snoring next to me right now.",
    "I watched a documentary about octopuses.",
    "They are so clever, they can open jars!",
    "Maybe I should get a fish tank.",
    "Biscuit would stare at it all day.",
    "I finished reading a novel yesterday.",
    "It was about a lighthouse keeper.",
    "The ending was quiet and beautiful.",
    "I'm glad I have someone to tell these things.",
    "You always listen so well.",
]
BAD_DAY = "I had an awful, terrible day. A patient yelled at me and I feel miserable and exhausted."
BETTER = "Thank you, that really helps. You're wonderful, I feel so much better now!"


def _say(line: str) -> None:
    print(line, flush=True)


async def _wait_for_message(telegram: TelegramEmulator, count: int, patience: float = 60.0) -> str:
    messages = await telegram.wait_for(CHAT, count, patience)
    return str(messages[count - 1].get("text", ""))


async def run_demo(settings: Settings) -> int:
    _say("aifriend demo: a real bot, a real PostgreSQL and the real state machine; only Telegram")
    _say("and the model are emulated (the emulated model answers by echoing, and says so).\n")
    admin_url = await asyncio.to_thread(embedded_database_url, settings.data_dir, "postgres")
    await recreate_database(admin_url, DEMO_DATABASE)
    url = with_database(admin_url, DEMO_DATABASE)
    await asyncio.to_thread(schema.upgrade, url)
    _say(f"database: embedded PostgreSQL in {settings.data_dir / 'pg'}, database {DEMO_DATABASE}")

    tgi = TGIEmulator(max_input_tokens=1023, max_total_tokens=1024)
    telegram = TelegramEmulator()
    await tgi.start()
    await telegram.start()
    demo = load_settings(
        bot_token=SecretStr(telegram.token),
        telegram_api_url=telegram.url,
        tgi_url=tgi.url,
        database_url=SecretStr(url),
        llm_backend="tgi",
        webhook_url=None,
        sentiment_model=None,
        reply_debounce=timedelta(seconds=0.2),
        limit_replies_per_minute=0,  # the scripted user writes dozens of messages a minute, no person does
        checkin_after=timedelta(seconds=3),
        checkin_sweep_every=timedelta(seconds=1),
        quiet_hours=QuietHours(0, 0),
        persona_file=settings.persona_file,
        asr_backend="pocketsphinx" if _can_hear() else "off",
    )
    _say(f"Bot API emulator: {telegram.url}   TGI emulator: {tgi.url} (max_total_tokens=1024)\n")
    stopper = Stopper()
    try:
        async with services(demo) as friend:
            bot = asyncio.create_task(serve(demo, friend, stopper=stopper))
            while not telegram.commands and not bot.done():  # noqa: ASYNC110 - the emulator has no event for it
                await asyncio.sleep(0.05)
            await _conversation(telegram, friend.reports)
            stopper.event.set()
            await bot
            await friend.background.drain()
            await _account(friend.reports)
    finally:
        stopper.event.set()
        await telegram.stop()
        await tgi.stop()
    return 0


def _can_hear() -> bool:
    """Whether a recogniser that needs no download is installed (the dev extra brings pocketsphinx)."""
    return importlib.util.find_spec("pocketsphinx") is not None


async def _voice_note(telegram: TelegramEmulator) -> None:
    if not _can_hear():
        _say("  (skipped: no recogniser that works offline is installed; `pip install pocketsphinx`, or")
        _say("   the dev extra, and the demo sends one. Production uses faster-whisper: docs/voice.md)")
        return
    sent = len(telegram.sent[CHAT])
    telegram.user_sends_voice(CHAT, VOICE_NOTE.read_bytes(), duration=5, username="sam")
    reply = await _wait_for_message(telegram, sent + 1)
    _say("  Sam   > (a voice note, 0:05, spoken by espeak-ng; heard by pocketsphinx on this machine)")
    _say(f"  Robin > {reply}")


async def _stage(reports: OperatorReports) -> str | None:
    report = await reports.conversation(CHAT)
    return str(report.overview["state"]) if report else None


async def _exchange(telegram: TelegramEmulator, reports: OperatorReports, text: str) -> None:
    sent = len(telegram.sent[CHAT])
    before = await _stage(reports)
    telegram.user_sends(CHAT, text, username="sam")
    reply = await _wait_for_message(telegram, sent + 1)
    after = await _stage(reports)
    _say(f"  Sam   > {text}")
    _say(f"  Robin > {reply}")
    if after is not None and before != after:
        _say(f"          [stage: {before or '-'} -> {after}]")


async def _conversation(telegram: TelegramEmulator, conversation: OperatorReports) -> None:
    _say("1. Greeting")
    await _exchange(telegram, conversation, "/start")
    _say("\n2. Getting to know each other (warming at the 10th message, close at the 30th)")
    for line in SMALL_TALK:
        await _exchange(telegram, conversation, line)
    _say("\n3. A bad day, and its repair")
    await _exchange(telegram, conversation, BAD_DAY)
    await _exchange(telegram, conversation, BETTER)
    _say("\n4. A voice note")
    await _voice_note(telegram)
    _say("\n5. A short break (CHECKIN_AFTER=3s in the demo): Robin writes first")
    sent = len(telegram.sent[CHAT])
    checkin = await _wait_for_message(telegram, sent + 1, patience=30)
    _say(f"  Robin > {checkin}")


async def _account(reports: OperatorReports) -> None:
    report = await reports.conversation(CHAT)
    assert report is not None
    overview = report.overview
    _say("\nWhat the database says now (aifriend inspect, from the operator views):")
    _say(
        f"  state: {overview['state']}; {overview['user_messages']} user messages, "
        f"{overview['bot_messages']} bot messages"
    )
    _say("  stage changes (state_transition_log):")
    for t in await reports.transitions(CHAT):
        scores = ""
        if t["sentiment_negative"] is not None:
            scores = f", negative {t['sentiment_negative']:.2f} / positive {t['sentiment_positive']:.2f}"
        _say(
            f"    {t['from_state'] or '(new)':>10} -> {t['to_state']:<10} trigger {t['trigger']:<9} "
            f"at message {t['user_messages']}{scores}"
        )
    _say(f"  memory summary: {overview['memory_summary'] or '(none yet)'}")
    _say(f"  check-ins: last at {overview['last_checkin_at']:%H:%M:%S}, {overview['checkins_unanswered']} unanswered")
    _say("\n" + format_conversation(report).split("transitions:")[0].strip().replace("\n", "\n  "))
    _say("\nThe data stays in the aifriend_demo database; it is recreated on the next `aifriend demo`.")
