"""Speech recognition for voice notes, local and behind one small interface.

`Recognizer.transcribe` is blocking (a model running on the CPU or GPU); `Transcriber` runs it
off the event loop with bounded concurrency, after decoding the note (`llm.audio`). Backends:

- faster-whisper (CTranslate2): production. `ASR_MODEL` names a size (`base`, from the Hugging
  Face cache, downloaded on first start where the network allows) or a local folder holding a
  converted model; the GPU when CUDA is there, else the CPU with int8.
- pocketsphinx: its wheel ships an English model, so it needs no download at all; what the tests
  and the demo use. English only, and far less accurate.

A backend that is not installed, or a model that cannot be loaded, is `SpeechUnavailableError` at
start-up with one line saying what to do; the bot then answers voice notes with its text-only line.
A synthesized answer (voice replies) would be a second interface beside this one, not a change to it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Protocol

from llm.audio import Audio, decode

# Transcriptions running at once in one process: each takes a CPU core (or the GPU) for seconds.
CONCURRENCY = 2


class SpeechUnavailableError(Exception):
    """The configured backend cannot run here; the message says what to install or mount."""


class TranscriptionError(Exception):
    """The recogniser failed on this note."""


class Recognizer(Protocol):
    name: str

    def transcribe(self, audio: Audio, language: str | None) -> str:
        """The words spoken in `audio`; `language`: an ISO 639-1 hint (None: detect)."""
        ...


class PocketSphinx:
    """CMU PocketSphinx with the US English model inside its wheel: no download, no network."""

    name = "pocketsphinx"

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise SpeechUnavailableError(
                "ASR_BACKEND=pocketsphinx but the pocketsphinx package is not installed: pip install pocketsphinx"
            ) from exc
        self._decoder = Decoder(samprate=16_000, loglevel="FATAL")
        self._lock = threading.Lock()  # one decoder holds one utterance at a time

    def transcribe(self, audio: Audio, language: str | None) -> str:
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(audio.pcm16.tobytes(), full_utt=True)
            self._decoder.end_utt()
            hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


class FasterWhisper:
    """Whisper through CTranslate2: the model loaded once, shared by `CONCURRENCY` workers."""

    name = "faster-whisper"

    def __init__(self, model: str, device: str = "auto") -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise SpeechUnavailableError(
                "ASR_BACKEND=faster-whisper but faster-whisper is not installed: pip install faster-whisper"
            ) from exc
        try:
            self._model = WhisperModel(model, device=device, compute_type="default", num_workers=CONCURRENCY)
        except Exception as exc:  # huggingface_hub, CTranslate2 and OS errors alike: the model is not usable
            raise SpeechUnavailableError(
                f"ASR_MODEL={model!r} could not be loaded ({exc.__class__.__name__}: {exc}). Pre-load it where the "
                "network is with `aifriend speech-model` (or `huggingface-cli download Systran/faster-whisper-"
                f"{model}`) into HF_HOME, or point ASR_MODEL at a folder holding a converted model"
            ) from exc

    def transcribe(self, audio: Audio, language: str | None) -> str:
        segments, _ = self._model.transcribe(
            audio.float32, language=language, beam_size=1, condition_on_previous_text=False
        )
        return " ".join(segment.text.strip() for segment in segments).strip()


def load_recognizer(backend: str, model: str) -> Recognizer | None:
    """The recogniser `ASR_BACKEND` names, loaded (this takes seconds); None for `off`."""
    if backend == "off":
        return None
    if backend == "pocketsphinx":
        return PocketSphinx()
    if backend == "faster-whisper":
        return FasterWhisper(model)
    raise SpeechUnavailableError(f"ASR_BACKEND={backend!r} is not one of faster-whisper, pocketsphinx, off")


@dataclass(frozen=True, slots=True)
class Heard:
    text: str
    seconds: float  # of audio


class Transcriber:
    """Decode and transcribe off the event loop, at most `concurrency` notes at a time."""

    def __init__(self, recognizer: Recognizer, concurrency: int = CONCURRENCY) -> None:
        self.recognizer = recognizer
        self._slots = asyncio.Semaphore(concurrency)

    async def transcribe(self, data: bytes, *, language: str | None, max_seconds: float) -> Heard:
        async with self._slots:
            return await asyncio.to_thread(self._run, data, language, max_seconds)

    def _run(self, data: bytes, language: str | None, max_seconds: float) -> Heard:
        audio = decode(data, max_seconds)
        try:
            text = self.recognizer.transcribe(audio, language)
        except Exception as exc:  # a recogniser's own failure on this note: reported, never retried forever
            raise TranscriptionError(f"{self.recognizer.name} failed: {exc}") from exc
        return Heard(" ".join(text.split()), audio.seconds)


def language_hint(language_code: str | None) -> str | None:
    """Telegram's `language_code` ("pt-BR") as the recogniser's hint ("pt")."""
    return language_code.split("-")[0].lower() if language_code else None
