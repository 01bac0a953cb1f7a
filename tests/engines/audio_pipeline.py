"""Push real audio through pipecat's Silero VAD and an STT service, at real-time pace.

This is what a transport does: 20 ms ``InputAudioRawFrame``s, paced like a microphone, go
through ``VADProcessor`` (which emits the VAD start/stop frames an STT service listens to)
and into the service under test. Every frame that leaves the service is recorded with the
monotonic time it arrived, so tests can check order and latency.
"""

from __future__ import annotations

import asyncio
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_stop import BaseUserTurnStopStrategy, SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

CHUNK_SECS = 0.02
_UPSTREAM_KEPT = (
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
    UserStoppedSpeakingFrame,
)


@dataclass
class Received:
    """Frames that left the service under test, each with its arrival time."""

    frames: list[tuple[float, Frame]] = field(default_factory=list)

    def of(self, kind: type) -> list[tuple[float, Frame]]:
        return [(t, f) for t, f in self.frames if isinstance(f, kind)]

    @property
    def finals(self) -> list[str]:
        return [f.text for _, f in self.of(TranscriptionFrame)]

    @property
    def interims(self) -> list[str]:
        return [f.text for _, f in self.of(InterimTranscriptionFrame)]

    def final_latencies(self) -> list[float]:
        """Seconds from each VAD stop to the next final transcript."""
        stops = [t for t, _ in self.of(VADUserStoppedSpeakingFrame)]
        finals = [t for t, _ in self.of(TranscriptionFrame)]
        out = []
        for stop in stops:
            after = [t for t in finals if t >= stop]
            if after:
                out.append(after[0] - stop)
        return out

    def turn_end_latencies(self) -> list[float]:
        """Seconds from each VAD stop to the next end of the user's turn."""
        stops = [t for t, _ in self.of(VADUserStoppedSpeakingFrame)]
        ends = [t for t, _ in self.of(UserStoppedSpeakingFrame)]
        out = []
        for stop in stops:
            after = [t for t in ends if t >= stop]
            if after:
                out.append(after[0] - stop)
        return out


class _Recorder(FrameProcessor):
    """Records frames going downstream, and VAD/turn frames coming back upstream."""

    def __init__(self, received: Received) -> None:
        super().__init__()
        self._received = received

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM or isinstance(frame, _UPSTREAM_KEPT):
            self._received.frames.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)


class Stamps(FrameProcessor):
    """Notes when each downstream frame passes (placed after the processor under test)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.seen.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)

    def at(self, kind: type[Frame]) -> list[float]:
        """When each frame of ``kind`` passed."""
        return [t for t, f in self.seen if isinstance(f, kind)]

    def of(self, kind: type[Frame]) -> list[Frame]:
        """The frames of ``kind`` that passed, in order."""
        return [f for _, f in self.seen if isinstance(f, kind)]


def user_aggregator(vad_stop_secs: float,
                    stop: list[BaseUserTurnStopStrategy] | None = None) -> LLMUserAggregator:
    """The app's arrangement: VAD inside the user aggregator; turns end by the ``stop``
    strategies (default: pipecat's speech timeout of 0.2 s)."""
    return LLMUserAggregator(
        LLMContext(),
        params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=vad_stop_secs)),
            user_turn_strategies=UserTurnStrategies(
                stop=stop or [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.2)]
            ),
        ),
    )


def read_pcm16(path: Path) -> tuple[bytes, int]:
    """PCM16 mono samples and rate of a WAV file."""
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, f"{path}: need 16-bit mono"
        return w.readframes(w.getnframes()), w.getframerate()


async def stream_through(
    service: FrameProcessor,
    pcm: bytes,
    sample_rate: int,
    *,
    lead_silence: float = 0.5,
    tail_silence: float = 2.0,
    vad_stop_secs: float = 0.2,
    timeout: float = 60.0,
    vad_in_aggregator: bool = False,
    stop: list[BaseUserTurnStopStrategy] | None = None,
) -> Received:
    """Feed ``pcm`` (16-bit mono) through VAD and ``service`` in real time; return its output.

    By default a ``VADProcessor`` sits in front of the service (VAD frames flow downstream).
    With ``vad_in_aggregator`` the pipeline is the app's: service -> user aggregator, whose
    VAD sends its frames back upstream to the service, and whose turn strategy ends turns.
    """
    received = Received()
    if vad_in_aggregator:
        processors = [service, _Recorder(received), user_aggregator(vad_stop_secs, stop)]
    else:
        vad_params = VADParams(stop_secs=vad_stop_secs)
        vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=vad_params))
        processors = [vad, service, _Recorder(received)]
    pipeline = Pipeline(processors)
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=sample_rate),
        cancel_on_idle_timeout=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    chunk = int(sample_rate * CHUNK_SECS) * 2
    audio = bytes(int(sample_rate * lead_silence) * 2) + pcm
    audio += bytes(int(sample_rate * tail_silence) * 2)

    async def feed() -> None:
        await asyncio.wait_for(started.wait(), timeout=30)
        begin = time.monotonic()
        for index, offset in enumerate(range(0, len(audio), chunk)):
            piece = audio[offset : offset + chunk].ljust(chunk, b"\0")
            await worker.queue_frame(InputAudioRawFrame(piece, sample_rate, 1))
            delay = begin + (index + 1) * CHUNK_SECS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), feed()), timeout=timeout)
    return received
