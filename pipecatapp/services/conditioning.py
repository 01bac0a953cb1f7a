"""Conditioning of one utterance before Whisper hears it.

Telephone-band speech (8 kHz, 300-3400 Hz) reaches the app resampled to 16 kHz by the reader
(soxr), but nothing above 4 kHz is left, and the 1.5-4 kHz band that carries consonants is
weak in it. ``condition`` detects such band-limited audio (almost no energy above 4 kHz) and
raises 1.5-3.8 kHz by 6 dB, then sets the level (RMS ``TARGET_RMS_DBFS``, peak below full
scale). Other audio passes untouched.

Clipped speech (its peaks cut flat) has two readings: the utterance as it is and a
de-clipped copy (``declip``: each flat run redrawn as the cubic through the two samples on
either side, then levelled). Neither is better on every utterance: over the bench's set the
de-clipped copy alone made more word errors than the clipped audio, but the two err on
different words. ``readings`` gives both, and the STT decodes both and keeps the one Whisper
is more sure of (services/bounded_whisper.py, ``transcribe_readings``).

Measured with the bench (``python -m bench --suite components``, docs/speech.md).
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
TARGET_RMS_DBFS = -20.0
PEAK_LIMIT = 0.9
BAND_LIMIT_HZ = 4000.0  # telephone audio has (almost) nothing above this
HIGH_ENERGY_SHARE = 0.005  # less than this share of energy above BAND_LIMIT_HZ: band-limited
BOOST_BAND_HZ = (1500.0, 3800.0)
BOOST_GAIN = 2.0  # +6 dB
_EDGE_HZ = 300.0  # width of the boost's cosine edges
CLIP_LEVEL = 0.99  # a sample this close to the utterance's peak sits on a plateau
CLIPPED_SHARE = 0.01  # clipped: more than this share of the voiced samples on the plateaus
_VOICED = 0.02  # |x| above this counts as voiced (for the share)
_CUBIC_CAP = 4.0  # a redrawn peak never rises above 4x the plateau


def high_band_share(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Share of the utterance's energy above ``BAND_LIMIT_HZ`` (0 for silence)."""
    if x.size < 2:
        return 0.0
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    total = float(power.sum())
    return float(power[freqs > BAND_LIMIT_HZ].sum()) / total if total > 0 else 0.0


def is_band_limited(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bool:
    """Whether the utterance looks like telephone-band audio (nothing above 4 kHz)."""
    return bool(np.any(x)) and high_band_share(x, sample_rate) < HIGH_ENERGY_SHARE


def boost_consonant_band(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Raise ``BOOST_BAND_HZ`` by ``BOOST_GAIN`` (cosine edges), zero phase, same length."""
    spectrum = np.fft.rfft(x.astype(np.float64))
    freqs = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    lo, hi = BOOST_BAND_HZ
    gain = np.ones_like(freqs)
    inside = (freqs >= lo) & (freqs <= hi)
    gain[inside] = BOOST_GAIN
    for edge in (lo, hi):
        ramp = (np.abs(freqs - edge) < _EDGE_HZ) & ~inside
        t = np.abs(freqs[ramp] - edge) / _EDGE_HZ
        gain[ramp] = 1.0 + (BOOST_GAIN - 1.0) * 0.5 * (1.0 + np.cos(np.pi * t))
    return np.fft.irfft(spectrum * gain, n=x.size).astype(np.float32)


def set_level(x: np.ndarray) -> np.ndarray:
    """Scale to ``TARGET_RMS_DBFS`` RMS, then down if the peak would pass ``PEAK_LIMIT``."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms <= 1e-6:
        return x.astype(np.float32, copy=False)
    gain = 10 ** (TARGET_RMS_DBFS / 20) / rms
    peak = float(np.max(np.abs(x))) * gain
    if peak > PEAK_LIMIT:
        gain *= PEAK_LIMIT / peak
    return (x * gain).astype(np.float32)


def is_clipped(x: np.ndarray) -> bool:
    """Whether the utterance's peaks were cut flat: more than ``CLIPPED_SHARE`` of its voiced
    samples sit within 1 % of its peak (clean speech: under 0.03 %; +20 dB clipped: 8-28 %)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < 0.1:
        return False
    voiced = np.abs(x[np.abs(x) > _VOICED])
    return bool(voiced.size) and float(np.mean(voiced >= CLIP_LEVEL * peak)) > CLIPPED_SHARE


def declip(x: np.ndarray) -> np.ndarray:
    """Redraw each flat run at the peak as the cubic through the two samples before and the
    two after it (never below the plateau, at most ``_CUBIC_CAP`` times it), then scale the
    whole utterance back under ``PEAK_LIMIT``."""
    y = x.astype(np.float64)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= 0.0:
        return x.astype(np.float32, copy=False)
    flat = np.abs(y) >= CLIP_LEVEL * peak
    edges = np.diff(np.concatenate(([0], flat.astype(np.int8), [0])))
    level = CLIP_LEVEL * peak
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if a < 2 or b + 2 > y.size:
            continue
        known = np.array([a - 2, a - 1, b, b + 1])
        coeffs = np.polyfit((known - a).astype(np.float64), y[known], 3)
        sign = np.sign(y[a])
        redrawn = np.polyval(coeffs, np.arange(b - a, dtype=np.float64))
        y[a:b] = sign * np.clip(sign * redrawn, level, _CUBIC_CAP * level)
    return (y * (PEAK_LIMIT / float(np.max(np.abs(y))))).astype(np.float32)


def condition(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One utterance (float32 mono) made ready for Whisper: band-limited audio gets its
    consonant band raised and its level set; anything else is returned unchanged."""
    if is_band_limited(x, sample_rate):
        return set_level(boost_consonant_band(x, sample_rate))
    return x


def readings(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """The versions of one utterance worth decoding, best first: the conditioned utterance,
    and for clipped speech also its de-clipped copy (conditioned the same way)."""
    first = condition(x, sample_rate)
    if not is_clipped(x):
        return [first]
    return [first, condition(declip(x), sample_rate)]
