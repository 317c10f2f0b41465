"""What a user waits for a voice note: transcription speed, and the reply to a 10-second note.

Run on demand:  python -m tests.bench.bench_voice [--notes 8]
1. In-process: decoding (PyAV) and recognising (by default the recogniser that runs here without a
   download, pocketsphinx; `--backend faster-whisper --model base` where that model can be had) the
   shipped voice note said 1, 2, 6 and 12 times over: seconds of work per second of audio, median
   of three runs each.
2. Through the real `aifriend run` (that recogniser, the TGI emulator answering at once):
   from the moment a 10-second note is sent to the moment its reply is sent, for `--notes` notes one
   after another, against a typed message of the same words.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from app.emulators.telegram import TelegramEmulator
from app.emulators.tgi import TGIEmulator
from llm.audio import decode
from llm.speech import load_recognizer
from migrations import schema as migrate
from tests.e2e.bot import running_bot
from tests.postgres import fresh_database, server_url
from tests.speech import SPOKEN, repeated, sample


def transcription_speed(backend: str, model: str) -> None:
    recognizer = load_recognizer(backend, model)
    assert recognizer is not None, "ASR_BACKEND=off hears nothing"
    print(f"transcription with {backend} on this machine (median of 3):")
    for times in (1, 2, 6, 12):
        data = sample() if times == 1 else repeated(times)
        decoding, hearing = [], []
        for _ in range(3):
            started = time.perf_counter()
            audio = decode(data, 600)
            decoded = time.perf_counter()
            recognizer.transcribe(audio, "en")
            decoding.append(decoded - started)
            hearing.append(time.perf_counter() - decoded)
        seconds = audio.seconds
        print(
            f"  {seconds:5.1f} s of audio: decode {statistics.median(decoding) * 1000:6.0f} ms, "
            f"recognise {statistics.median(hearing):5.2f} s = "
            f"{statistics.median(hearing) / seconds:.3f} s per second of audio"
        )


async def reply_times(notes: int, backend: str, model: str) -> None:
    ten_seconds = repeated(2)
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            telegram, tgi = TelegramEmulator(), TGIEmulator()
            await telegram.start()
            await tgi.start()
            try:
                async with running_bot(telegram, tgi, url, Path(tmp), ASR_BACKEND=backend, ASR_MODEL=model):
                    await _answered(telegram, 1, lambda: telegram.user_sends(1, "warming up"), patience=120)
                    voiced, typed = [], []
                    for n in range(notes):
                        chat = 100 + n
                        voiced.append(
                            await _answered(
                                telegram, chat, lambda c=chat: telegram.user_sends_voice(c, ten_seconds, 10)
                            )
                        )
                        typed.append(
                            await _answered(telegram, 500 + n, lambda c=500 + n: telegram.user_sends(c, SPOKEN))
                        )
            finally:
                await telegram.stop()
                await tgi.stop()
    print(f"reply to a 10-second voice note through `aifriend run` ({notes} notes, one after another):")
    print(f"  voice note: median {statistics.median(voiced):.2f} s, max {max(voiced):.2f} s")
    print(f"  the same words typed: median {statistics.median(typed) * 1000:.0f} ms, max {max(typed) * 1000:.0f} ms")


async def _answered(telegram: TelegramEmulator, chat: int, send: object, patience: float = 60) -> float:
    started = time.perf_counter()
    send()  # type: ignore[operator]
    await telegram.wait_for(chat, 1, patience=patience)
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=8)
    parser.add_argument("--backend", default="pocketsphinx", help="ASR_BACKEND: pocketsphinx or faster-whisper")
    parser.add_argument("--model", default="base", help="ASR_MODEL, for faster-whisper")
    options = parser.parse_args()
    transcription_speed(options.backend, options.model)
    asyncio.run(reply_times(options.notes, options.backend, options.model))
