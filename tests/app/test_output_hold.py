"""The bot's voice held on the first window of user speech (pipecatapp/output_hold.py).

Real Silero on real espeak-ng speech for the VAD side; pipecat's own output transport
machinery (the file transport's output in a real pipeline) for the output side. The output
tests also guard the one reach past pipecat's public API: they fail if pipecat's media sender
stops writing through the transport instance's ``write_audio_frame``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import EndFrame, Frame, InterruptionFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from pipecatapp.output_hold import HoldDropper, HoldingVAD, OutputHold, hold_output
from pipecatapp.timeline import AppClock, Timeline
from pipecatapp.transports.file import FileOutputTransport
from tests.app.voice import read_pcm

RATE = 16000
FRAME = 320  # 20 ms, as the transports deliver it
OUT_RATE = 24000


def _speech(espeak_wav, tmp_path: Path, text: str) -> np.ndarray:
    samples, rate = read_pcm(espeak_wav(text, tmp_path / "say.wav"))
    assert rate == RATE
    return samples


async def _feed(audio: np.ndarray) -> list[str]:
    events: list[str] = []
    vad = HoldingVAD(hold=OutputHold(on_event=events.append), pause_secs=0.0,
                     params=VADParams(confidence=0.5, start_secs=0.064, stop_secs=0.2,
                                      min_volume=0.2))
    vad.set_sample_rate(RATE)
    padded = np.concatenate([np.zeros(RATE, np.int16), audio, np.zeros(RATE // 2, np.int16)])
    for i in range(0, len(padded), FRAME):
        await vad.analyze_audio(padded[i : i + FRAME].tobytes())
    return events


def test_speech_holds_the_output_once_and_does_not_release_it(espeak_wav, tmp_path):
    events = asyncio.run(_feed(_speech(espeak_wav, tmp_path, "What is the capital of Spain?")))
    assert events == ["output_hold"], events


def test_a_blip_of_one_window_holds_the_output_then_releases_it(espeak_wav, tmp_path):
    vowel = _speech(espeak_wav, tmp_path, "Ah")
    peak = int(np.argmax(np.abs(vowel)))
    blip = vowel[peak - 480 : peak + 480]  # 60 ms of the vowel: one window of speech
    assert asyncio.run(_feed(blip)) == ["output_hold", "output_resume"]


def _tone(secs: float) -> bytes:
    t = np.arange(int(OUT_RATE * secs)) / OUT_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).tobytes()


async def _play(tmp_path: Path, during: list[tuple[float, object]]) -> tuple[np.ndarray, int]:
    """One second of tone through the file transport's output with a hold on it; ``during``
    are (seconds after the start, action) pairs: a float holds for that long, None
    releases, a Frame is queued."""
    clock = AppClock()
    path = tmp_path / "out.wav"
    output = FileOutputTransport(
        TransportParams(audio_out_enabled=True, audio_out_sample_rate=OUT_RATE),
        clock, Timeline(clock), str(path))
    hold = OutputHold()
    hold_output(output, hold)
    worker = PipelineWorker(Pipeline([HoldDropper(hold), output]),
                            params=PipelineParams(audio_out_sample_rate=OUT_RATE),
                            clock=clock, cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), timeout=30)
        await worker.queue_frame(OutputAudioRawFrame(_tone(1.0), OUT_RATE, 1))
        begin = asyncio.get_running_loop().time()
        for at, action in during:
            await asyncio.sleep(max(0.0, begin + at - asyncio.get_running_loop().time()))
            if isinstance(action, float):
                hold.hold(action)
            elif action is None:
                hold.release()
            else:
                await worker.queue_frame(action)
        await asyncio.sleep(1.6)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), timeout=30)
    return read_pcm(path)


def _voiced(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """Seconds of tone, the longest silence inside it, and from its first to its last
    sample (in 10 ms blocks)."""
    block = rate // 100
    peaks = np.abs(audio[: audio.size // block * block].reshape(-1, block)).max(axis=1)
    loud = np.flatnonzero(peaks > 1000)
    gaps = np.diff(loud)
    return (loud.size / 100, float(gaps.max() - 1) / 100 if gaps.size else 0.0,
            float(loud[-1] - loud[0] + 1) / 100)


def test_a_held_output_stops_writing_then_goes_on_with_nothing_lost(tmp_path):
    audio, rate = asyncio.run(_play(tmp_path, [(0.3, 0.2)]))
    tone, gap, _ = _voiced(audio, rate)
    assert tone == pytest.approx(1.0, abs=0.03), "audio was lost or added"
    # A 0.2 s hold, less the chunks the transport had already written (up to two of 20 ms).
    assert 0.12 <= gap <= 0.22, f"the hold left a {gap:.3f} s gap"


def test_a_released_hold_goes_on_at_once(tmp_path):
    audio, rate = asyncio.run(_play(tmp_path, [(0.3, 0.5), (0.34, None)]))
    tone, gap, _ = _voiced(audio, rate)
    assert tone == pytest.approx(1.0, abs=0.03)
    assert gap <= 0.08, f"a released hold still left a {gap:.3f} s gap"


def test_an_interruption_during_a_hold_drops_what_was_held(tmp_path):
    audio, rate = asyncio.run(_play(tmp_path, [(0.3, 0.15), (0.33, InterruptionFrame())]))
    tone, _, span = _voiced(audio, rate)
    # The hold came 0.3 s after the tone was queued (its first chunk plays a little later).
    assert 0.25 <= tone <= 0.40, f"{tone:.3f} s of the 1 s tone played; the hold is at 0.3 s"
    # Nothing after the hold: pipecat lets the write in progress finish, and that write was
    # the held one (it would have played when the hold ran out, 0.45 s in).
    assert span <= 0.40, f"the tone played until {span:.3f} s"
