"""audio_frames: an engine's PCM chunks as pipecat audio frames at the pipeline's rate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from pipecat.audio.utils import create_stream_resampler

from pipecatapp.services.tts_common import audio_frames


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _tone(rate: int, secs: float) -> bytes:
    t = np.arange(int(rate * secs)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


async def test_chunks_at_the_pipeline_rate_pass_unchanged():
    one, two = _tone(16000, 0.3), _tone(16000, 0.2)
    frames = [f async for f in audio_frames(
        _chunks(one, b"", two), in_rate=16000, out_rate=16000,
        resampler=create_stream_resampler(), context_id="c1")]
    assert [f.audio for f in frames] == [one, two]  # the empty chunk makes no frame
    assert {(f.sample_rate, f.num_channels, f.context_id) for f in frames} == {(16000, 1, "c1")}


async def test_chunks_are_resampled_to_the_pipeline_rate():
    parts = [_tone(22050, 0.5) for _ in range(4)]
    frames = [f async for f in audio_frames(
        _chunks(*parts), in_rate=22050, out_rate=16000,
        resampler=create_stream_resampler(), context_id="c2")]
    assert len(frames) == 4 and {f.sample_rate for f in frames} == {16000}
    samples = sum(len(f.audio) for f in frames) // 2
    # A stream resampler holds back its filter delay (about 33 ms at VHQ) for more audio.
    assert 2 * 16000 - 800 <= samples <= 2 * 16000, samples
