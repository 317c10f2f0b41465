"""Decoding what Telegram sends (OGG/Opus voice notes, MP4 round video notes) into the 16 kHz mono
samples speech recognisers take, in-process: PyAV carries FFmpeg's libraries in its wheel, so no
system ffmpeg (and no PATH) is involved."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


class UndecodableAudioError(Exception):
    """The bytes are not audio that FFmpeg can read (or hold no audio stream)."""


class AudioTooLongError(Exception):
    """Decoding stopped at the cap: the note is longer than the note's stated duration claimed."""


@dataclass(frozen=True, slots=True)
class Audio:
    pcm16: np.ndarray  # int16 mono samples at SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.pcm16) / SAMPLE_RATE

    @property
    def float32(self) -> np.ndarray:
        """Samples in [-1, 1]: what Whisper-style models take."""
        return self.pcm16.astype(np.float32) / 32768.0


def decode(data: bytes, max_seconds: float) -> Audio:
    """The first audio stream of `data` as 16 kHz mono; blocking (run it off the event loop)."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - PyAV comes with every ASR backend's extra
        raise UndecodableAudioError("PyAV is not installed: pip install 'aifriend[voice]'") from exc
    chunks: list[np.ndarray] = []
    total = 0
    limit = int((max_seconds + 1) * SAMPLE_RATE)  # a second of slack over the stated duration's cap
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UndecodableAudioError("the file holds no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(container.streams.audio[0]):
                for resampled in resampler.resample(frame):
                    chunk = resampled.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > limit:
                    raise AudioTooLongError(f"longer than {max_seconds:g} s")
            for resampled in resampler.resample(None):
                chunks.append(resampled.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise UndecodableAudioError(f"cannot decode the audio: {exc}") from exc
    if not chunks:
        raise UndecodableAudioError("the audio stream is empty")
    return Audio(np.concatenate(chunks).astype(np.int16))
