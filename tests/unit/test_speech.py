"""Decoding and recognising speech in-process: the shipped voice note (espeak-ng's voice, OGG/Opus
as Telegram sends it) through PyAV and the pocketsphinx recogniser, with no download and no network."""

from __future__ import annotations

import os

import pytest

from llm.audio import SAMPLE_RATE, AudioTooLongError, UndecodableAudioError, decode
from llm.speech import (
    PocketSphinx,
    SpeechUnavailableError,
    Transcriber,
    TranscriptionError,
    language_hint,
    load_recognizer,
)
from tests.speech import HEARD_WORDS, as_video_note, sample


def test_a_telegram_voice_note_decodes_to_16_khz_mono() -> None:
    audio = decode(sample(), max_seconds=60)
    assert 5.0 < audio.seconds < 5.3
    assert audio.pcm16.dtype.name == "int16" and audio.pcm16.ndim == 1
    assert abs(audio.float32).max() <= 1.0 and abs(audio.float32).max() > 0.1, "speech, not silence"
    assert len(decode(as_video_note(), max_seconds=60).pcm16) > 5 * SAMPLE_RATE


@pytest.mark.parametrize("data", [os.urandom(4096), b"", b"OggS" + os.urandom(500)])
def test_what_is_not_audio_is_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableAudioError):
        decode(data, max_seconds=60)


def test_decoding_stops_at_the_cap_whatever_the_note_claimed() -> None:
    with pytest.raises(AudioTooLongError):
        decode(sample(), max_seconds=2)


async def test_pocketsphinx_hears_the_spoken_words_off_the_event_loop() -> None:
    transcriber = Transcriber(PocketSphinx())
    heard = await transcriber.transcribe(sample(), language="en", max_seconds=60)
    assert all(word in heard.text for word in HEARD_WORDS), heard.text
    assert 5.0 < heard.seconds < 5.3
    with pytest.raises(UndecodableAudioError):
        await transcriber.transcribe(os.urandom(2048), language="en", max_seconds=60)


async def test_a_recogniser_failing_on_a_note_is_a_transcription_error() -> None:
    class Broken:
        name = "broken"

        def transcribe(self, audio: object, language: str | None) -> str:
            raise RuntimeError("out of memory")

    with pytest.raises(TranscriptionError, match="broken failed: out of memory"):
        await Transcriber(Broken()).transcribe(sample(), language=None, max_seconds=60)


def test_an_unusable_backend_says_what_to_do(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_recognizer("off", "base") is None
    with pytest.raises(SpeechUnavailableError, match="huggingface-cli download"):
        load_recognizer("faster-whisper", str(tmp_path) + "/missing-model")
    with pytest.raises(SpeechUnavailableError, match="not one of"):
        load_recognizer("whisper.cpp", "base")


@pytest.mark.parametrize(("code", "hint"), [("en", "en"), ("pt-BR", "pt"), ("DE", "de"), (None, None), ("", None)])
def test_telegrams_language_code_is_the_recognisers_hint(code: str | None, hint: str | None) -> None:
    assert language_hint(code) == hint
