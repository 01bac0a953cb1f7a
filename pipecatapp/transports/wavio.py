"""Reading the user's WAV for the file transport, and finding its speech segments."""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class WavError(ValueError):
    """The input WAV cannot be used; the message says why (the CLI exits 2 on it)."""


@dataclass
class Speech:
    """Mono PCM16 audio at ``sample_rate``."""

    pcm: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


def read_wav(path: str | Path, sample_rate: int = 16000) -> Speech:
    """Read a PCM16 WAV (any rate, mono or stereo) as mono PCM16 at ``sample_rate``."""
    p = Path(path)
    if not p.is_file():
        raise WavError(f"input WAV {p} does not exist")
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, rate, n = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError, RuntimeError, ValueError, struct.error) as e:
        why = str(e) or type(e).__name__
        raise WavError(f"input WAV {p} is not a readable WAV file: {why}") from None
    if width != 2:
        raise WavError(f"input WAV {p} has {8 * width}-bit samples; 16-bit PCM is needed")
    if channels < 1 or rate < 4000:
        raise WavError(f"input WAV {p} has an invalid format ({channels} ch, {rate} Hz)")
    if len(raw) < 2 * channels * rate // 10:
        raise WavError(f"input WAV {p} holds less than 0.1 s of audio")
    samples = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], dtype=np.int16)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != sample_rate:
        import soxr

        samples = soxr.resample(samples, rate, sample_rate).astype(np.int16)
    return Speech(samples.tobytes(), sample_rate)


def speech_segments(
    speech: Speech, *, frame_ms: int = 20, min_gap: float = 0.3, min_len: float = 0.1
) -> list[tuple[float, float]]:
    """(onset, offset) seconds of the spoken parts, by frame energy (ground truth for the
    timeline: the real onset of a barge-in, the real end of a question)."""
    x = np.frombuffer(speech.pcm, dtype=np.int16).astype(np.float32)
    hop = speech.sample_rate * frame_ms // 1000
    n = len(x) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    threshold = max(300.0, 0.05 * float(np.percentile(rms, 99)))
    voiced = rms > threshold
    segments: list[tuple[float, float]] = []
    start: int | None = None
    for i, v in enumerate(voiced):
        if v and start is None:
            start = i
        elif not v and start is not None:
            segments.append((start * hop / speech.sample_rate, i * hop / speech.sample_rate))
            start = None
    if start is not None:
        segments.append((start * hop / speech.sample_rate, n * hop / speech.sample_rate))
    merged: list[tuple[float, float]] = []
    for seg in segments:
        if merged and seg[0] - merged[-1][1] < min_gap:
            merged[-1] = (merged[-1][0], seg[1])
        else:
            merged.append(seg)
    return [s for s in merged if s[1] - s[0] >= min_len]


def write_wav(path: str | Path, pcm: bytes, sample_rate: int) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
