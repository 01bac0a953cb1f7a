"""The package's one audio-file reader and writer, and speech segments of what was read.

``read_audio`` reads what people have through ``soundfile`` (libsndfile): WAV of 8/16/24/32-bit
integer or 32/64-bit float samples, FLAC, OGG (Vorbis, Opus) and the other formats libsndfile
knows, at any sample rate and channel count, and returns mono PCM16 at the rate asked for
(channels averaged, resampled with soxr). A path that cannot be used raises
:class:`AudioFileError` saying what is wrong with it (missing, a directory, unreadable, not
audio), which the CLI prints as one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_SECONDS = 0.1


class AudioFileError(ValueError):
    """The input audio file cannot be used; the message says why (the CLI exits 2 on it)."""


# The name the CLI and older callers know.
WavError = AudioFileError


@dataclass
class Speech:
    """Mono PCM16 audio at ``sample_rate``."""

    pcm: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    @property
    def samples(self) -> np.ndarray:
        """The audio as int16 samples (a read-only view)."""
        return np.frombuffer(self.pcm, dtype=np.int16)


def check_readable(path: str | Path, what: str = "input audio") -> Path:
    """``path`` as a Path if it is a readable file, else AudioFileError saying why not."""
    p = Path(path).expanduser()
    if not str(path):
        raise AudioFileError(f"{what}: no file given")
    if p.is_dir():
        raise AudioFileError(f"{what} {p} is a directory, not an audio file")
    if not p.exists():
        raise AudioFileError(f"{what} {p} does not exist")
    if not p.is_file():
        raise AudioFileError(f"{what} {p} is not a regular file")
    if not os.access(p, os.R_OK):
        raise AudioFileError(f"{what} {p} cannot be read (permission denied)")
    return p


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] (any shape) -> int16, clipped."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def read_audio(
    path: str | Path,
    sample_rate: int | None = 16000,
    *,
    what: str = "input audio",
    min_seconds: float = MIN_SECONDS,
) -> Speech:
    """Read an audio file as mono PCM16 at ``sample_rate`` (``None``: the file's own rate).
    ``what`` names the file in error messages; shorter than ``min_seconds`` is an error."""
    import soundfile as sf

    p = check_readable(path, what)
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except PermissionError:
        raise AudioFileError(f"{what} {p} cannot be read (permission denied)") from None
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        why = str(e).replace(str(p), "").strip(" :'\"") or type(e).__name__
        raise AudioFileError(
            f"{what} {p} is not a readable audio file (WAV, FLAC or OGG): {why}"
        ) from None
    channels = data.shape[1]
    if channels < 1 or rate < 1000:
        raise AudioFileError(f"{what} {p} has an invalid format ({channels} ch, {rate} Hz)")
    if data.shape[0] < rate * min_seconds:
        raise AudioFileError(f"{what} {p} holds less than {min_seconds:g} s of audio")
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    target = rate if sample_rate is None else sample_rate
    if rate != target:
        import soxr

        mono = soxr.resample(mono, rate, target)
    return Speech(to_pcm16(mono).tobytes(), target)


def read_wav(path: str | Path, sample_rate: int = 16000) -> Speech:
    """Compatibility name of :func:`read_audio` (any format soundfile reads)."""
    return read_audio(path, sample_rate)


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
    """Write mono PCM16 ``pcm`` as a WAV (parent folders are created)."""
    import soundfile as sf

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), np.frombuffer(pcm, dtype=np.int16), sample_rate, subtype="PCM_16",
             format="WAV")


class PlacedWavWriter:
    """Writes mono PCM16 chunks placed at times (seconds) into a WAV as they come, filling
    the gaps with silence, so a long session never holds its output in memory. Chunks must
    come in time order; a chunk that starts before the end of the previous one loses its
    overlapping start."""

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        import soundfile as sf

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self._file = sf.SoundFile(str(p), "w", samplerate=sample_rate, channels=1,
                                  subtype="PCM_16", format="WAV")
        self.samples_written = 0

    def place(self, begin: float, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16)
        at = max(0, round(begin * self.sample_rate))
        gap = at - self.samples_written
        step = self.sample_rate  # write long silences a second at a time
        while gap > 0:
            n = min(gap, step)
            self._file.write(np.zeros(n, dtype=np.int16))
            gap -= n
        skip = max(0, self.samples_written - at)
        if skip < samples.size:
            self._file.write(samples[skip:])
        self.samples_written = max(self.samples_written, at + samples.size)

    @property
    def seconds(self) -> float:
        return self.samples_written / self.sample_rate

    def close(self) -> None:
        if self.samples_written == 0:
            self._file.write(np.zeros(1, dtype=np.int16))
        self._file.close()
