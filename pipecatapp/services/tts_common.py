"""What the TTS adapters share: PCM helpers, lead-in trimming, audio frames, and
off-pipeline rendering.

``render_speech(tts, text)`` synthesizes a whole text outside any pipeline (the app renders
its spoken apology at start-up with it); every TTS adapter of this package implements the
small :class:`OfflineSynthesizer` protocol it relies on. ``audio_frames`` turns an engine's
PCM chunks into pipecat's ``TTSAudioRawFrame``s at the pipeline's rate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import numpy as np
from pipecat.audio.resamplers.base_audio_resampler import BaseAudioResampler
from pipecat.frames.frames import TTSAudioRawFrame

from pipecatapp.services.loudness import onset, window_rms

# Piper starts each sentence with 0.04-0.47 s of near-silence; anything under this level
# (dB relative to full scale, RMS over 10 ms) before the first sound is lead-in.
LEAD_IN_THRESHOLD_DBFS = -40.0
# Audio kept before the first sound, so a soft onset is not clipped.
LEAD_IN_KEEP_SECS = 0.02
_WINDOW_SECS = 0.01


@runtime_checkable
class OfflineSynthesizer(Protocol):
    """A TTS adapter that can synthesize a text without a running pipeline."""

    def synthesize_pcm(self, text: str) -> tuple[bytes, int]:
        """All of ``text`` as 16-bit mono PCM, and its sample rate."""
        ...


def render_speech(tts: object, text: str) -> tuple[bytes, int]:
    """Synthesize ``text`` with a TTS adapter, before (or outside) the pipeline.

    Returns 16-bit mono PCM bytes and their sample rate (the voice's native rate).
    Raises TypeError for a service that is not one of this package's TTS adapters and
    ValueError for an empty text or a synthesis that produced no audio.
    """
    if not isinstance(tts, OfflineSynthesizer):
        raise TypeError(f"{type(tts).__name__} cannot render speech outside a pipeline")
    if not text.strip():
        raise ValueError("render_speech: nothing to say (empty text)")
    pcm, sample_rate = tts.synthesize_pcm(text)
    if not pcm:
        raise ValueError(f"render_speech: {type(tts).__name__} produced no audio for {text!r}")
    return pcm, sample_rate


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] (clipped) as 16-bit little-endian PCM bytes."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def lead_in_samples(
    pcm: bytes, sample_rate: int, *, threshold_dbfs: float = LEAD_IN_THRESHOLD_DBFS
) -> int:
    """Number of near-silent samples before the first 10 ms window louder than the threshold.

    Returns the whole length when nothing is louder.
    """
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    window = max(1, int(sample_rate * _WINDOW_SECS))
    first = onset(window_rms(samples, window), 10.0 ** (threshold_dbfs / 20.0))
    return first * window if first is not None else len(samples)


def trim_lead_in(
    pcm: bytes,
    sample_rate: int,
    *,
    threshold_dbfs: float = LEAD_IN_THRESHOLD_DBFS,
    keep_secs: float = LEAD_IN_KEEP_SECS,
) -> tuple[bytes, float]:
    """Drop the near-silent start of ``pcm`` (16-bit mono), keeping ``keep_secs`` before the sound.

    Returns the trimmed PCM and the seconds removed. Audio with no sound at all is returned
    unchanged (a pause the text asked for is not ours to remove).
    """
    total = len(pcm) // 2
    silent = lead_in_samples(pcm, sample_rate, threshold_dbfs=threshold_dbfs)
    if silent >= total:
        return pcm, 0.0
    cut = max(0, silent - int(sample_rate * keep_secs))
    return pcm[cut * 2 :], cut / sample_rate


async def audio_frames(
    chunks: AsyncIterator[bytes],
    *,
    in_rate: int,
    out_rate: int,
    resampler: BaseAudioResampler,
    context_id: str,
) -> AsyncIterator[TTSAudioRawFrame]:
    """One mono ``TTSAudioRawFrame`` at ``out_rate`` per chunk of 16-bit PCM at ``in_rate``
    (resampled through ``resampler``, a stream resampler kept by the service)."""
    async for pcm in chunks:
        if in_rate != out_rate:
            pcm = await resampler.resample(pcm, in_rate, out_rate)
        if pcm:
            yield TTSAudioRawFrame(pcm, out_rate, 1, context_id=context_id)
