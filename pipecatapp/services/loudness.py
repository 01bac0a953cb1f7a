"""Loudness of audio in short windows, and where its sound begins.

One measure for every place that asks: the TTS adapters' lead-in trim (tts_common), Whisper's
quiet-lead trim (whisper_window) and the STT's voiced-time check (bounded_whisper).
"""

from __future__ import annotations

import numpy as np


def window_rms(samples: np.ndarray, window: int) -> np.ndarray:
    """RMS of each whole ``window``-sample window of ``samples`` (float, full scale 1.0);
    a trailing part window is left out."""
    count = len(samples) // window
    frames = np.asarray(samples[: count * window], dtype=np.float32).reshape(count, window)
    return np.sqrt(np.mean(np.square(frames), axis=1))


def onset(rms: np.ndarray, threshold: float) -> int | None:
    """Index of the first window louder than ``threshold``; None when none is."""
    loud = np.flatnonzero(rms > threshold)
    return int(loud[0]) if loud.size else None
