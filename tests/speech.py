"""Speech for the voice tests, made on this machine: the shipped sample (espeak-ng's voice saying
SPOKEN, encoded as Telegram sends voice notes: OGG/Opus, mono, 48 kHz) and re-encodings of it."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from llm.audio import SAMPLE_RATE, decode

SAMPLE = Path(__file__).resolve().parent.parent / "app" / "emulators" / "voice_note.ogg"
SPOKEN = "Hello Robin. I adopted a puppy today and his name is Biscuit."
HEARD_WORDS = ("hello", "robin", "adopted", "puppy", "today")  # what pocketsphinx makes out of it


def sample() -> bytes:
    return SAMPLE.read_bytes()


def encoded(pcm16: np.ndarray, container: str = "ogg", codec: str = "libopus") -> bytes:
    """16 kHz mono samples as a file Telegram would send: OGG/Opus (voice) or MP4/AAC (video note's sound)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=48_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name,
            layout="mono",
            rate=48_000,
            frame_size=stream.codec_context.frame_size or None,
        )
        for piece in [*resampler.resample(frame), *resampler.resample(None), None]:
            for packet in stream.encode(piece):
                out.mux(packet)
    return buffer.getvalue()


def repeated(times: int) -> bytes:
    """The sample said `times` over, as one longer voice note."""
    return encoded(np.tile(decode(sample(), 60).pcm16, times))


def as_video_note() -> bytes:
    """The sample's sound in an MP4, as a round video note carries it."""
    return encoded(decode(sample(), 60).pcm16, "mp4", "aac")
