"""File transport: a WAV of user speech in, paced in real time as 20 ms frames; the bot's
speech out as a WAV on the same clock, so the output file lines up with the input.

The output side behaves like a sound card: a write returns when the chunk starts playing, so
at most about two chunks are ahead of the clock when an interruption drops the rest. The
output reports when bot speech really starts and stops playing to the timeline (the figures
voice-to-voice and barge-in latency are computed from).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    EndWorkerFrame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from pipecatapp.timeline import AppClock, Timeline
from pipecatapp.transports.wavio import PlacedWavWriter, Speech, read_audio, speech_segments

if TYPE_CHECKING:
    from pipecatapp.config import AppConfig
    from pipecatapp.transports import RunSession

FRAME_SECS = 0.02
VOICED_PEAK = 200  # int16 peak above which an output chunk counts as speech
STOP_HOLD_SECS = 0.4  # silence at the output before bot speech counts as stopped


class FileInputTransport(BaseInputTransport):
    """Pushes the WAV as InputAudioRawFrames at real-time pace, then silence until done."""

    def __init__(
        self,
        speech: Speech,
        params: TransportParams,
        clock: AppClock,
        timeline: Timeline,
        is_idle: Callable[[], bool],
        tail_secs: float,
    ) -> None:
        super().__init__(params)
        self._speech = speech
        self._clock = clock
        self._timeline = timeline
        self._is_idle = is_idle
        self._tail_secs = tail_secs
        self._feed: asyncio.Task | None = None
        self.input_start: float | None = None
        self.finished = asyncio.Event()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._feed is None:
            self._feed = self.create_task(self._run(), "file-input-feed")

    async def stop(self, frame: EndFrame) -> None:
        await self._cancel_feed()
        await super().stop(frame)

    async def cancel(self, frame) -> None:  # noqa: ANN001 - CancelFrame
        await self._cancel_feed()
        await super().cancel(frame)

    async def _cancel_feed(self) -> None:
        feed = self._feed
        if feed is not None and not feed.done() and asyncio.current_task() is not feed:
            await self.cancel_task(feed)
        self._feed = None

    async def _run(self) -> None:
        rate = self._speech.sample_rate
        step = int(rate * FRAME_SECS) * 2
        pcm = self._speech.pcm
        start = self._clock.now() + 0.1
        self.input_start = start
        self._timeline.write("input_start", t=start, seconds=round(self._speech.seconds, 3))
        for onset, offset in speech_segments(self._speech):
            self._timeline.input_speech(start + onset, start + offset)
        silence = bytes(step)
        i = 0
        end_of_input = start + len(pcm) / 2 / rate
        deadline = end_of_input + self._tail_secs
        while True:
            target = start + i * FRAME_SECS
            delay = target - self._clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = pcm[i * step : (i + 1) * step]
            if i * step >= len(pcm):
                chunk = silence
                now = self._clock.now()
                # Check every 100 ms whether the bot has finished with what it heard.
                if i % 5 == 0 and (self._is_idle() or now > deadline):
                    if now > deadline:
                        logger.warning("file input: the bot did not go idle; ending anyway")
                    break
            elif len(chunk) < step:
                chunk = chunk + bytes(step - len(chunk))
            await self.push_audio_frame(
                InputAudioRawFrame(audio=chunk, sample_rate=rate, num_channels=1)
            )
            i += 1
        self._timeline.write("input_end", t=end_of_input)
        self.finished.set()
        await self.push_frame(EndWorkerFrame(reason="input finished and the bot is idle"))


class FileOutputTransport(BaseOutputTransport):
    """Places bot audio on the app clock, paced like a sound card, and writes the WAV."""

    def __init__(
        self, params: TransportParams, clock: AppClock, timeline: Timeline, path: str
    ) -> None:
        super().__init__(params)
        self._clock = clock
        self._timeline = timeline
        self._path = path
        self._writer: PlacedWavWriter | None = None  # opened at the first chunk (its rate)
        self._cursor = 0.0  # app-clock time where the next written audio starts
        self._voiced_end: float | None = None  # end of the last voiced chunk while playing
        self._playing = False
        self._watch: asyncio.Task | None = None
        self._written = False

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._watch is None:
            self._watch = self.create_task(self._watch_silence(), "file-output-watch")

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = self._clock.now()
        if self._cursor < now:
            self._cursor = now  # the device was idle: this chunk starts playing now
        begin = self._cursor
        seconds = len(frame.audio) / 2 / frame.sample_rate / max(1, frame.num_channels)
        if self._writer is None and not self._written:
            self._writer = PlacedWavWriter(self._path, frame.sample_rate)
        if self._writer is not None:
            self._writer.place(begin, frame.audio)  # straight to disk, on the app clock
        self._cursor = begin + seconds
        samples = np.frombuffer(frame.audio, dtype=np.int16)
        if samples.size and int(np.abs(samples).max()) > VOICED_PEAK:
            if not self._playing:
                self._playing = True
                self._timeline.bot_audio_started(begin)
            self._voiced_end = self._cursor
        # Block until this chunk starts playing, like a sound card with a short buffer.
        delay = begin - self._clock.now()
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    async def _watch_silence(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            self._check_stopped()

    def _check_stopped(self, *, force: bool = False) -> None:
        if (
            self._playing
            and self._voiced_end is not None
            and (force or self._clock.now() - self._voiced_end >= STOP_HOLD_SECS)
        ):
            self._playing = False
            self._timeline.bot_audio_stopped(self._voiced_end)

    @property
    def playing(self) -> bool:
        return self._playing

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        self.finish()

    async def cancel(self, frame) -> None:  # noqa: ANN001 - CancelFrame
        await super().cancel(frame)
        self.finish()

    def finish(self) -> None:
        """Write the output WAV (once)."""
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        self._check_stopped(force=True)
        if self._written:
            return
        self._written = True
        writer = self._writer or PlacedWavWriter(self._path, self.sample_rate or 24000)
        self._writer = None
        end = writer.seconds
        writer.close()
        logger.info(f"file output: wrote {end:.1f} s of audio to {self._path}")


class FileTransport(BaseTransport):
    """Input WAV -> pipeline -> output WAV, both on the app clock."""

    def __init__(
        self,
        *,
        speech: Speech,
        output_path: str,
        clock: AppClock,
        timeline: Timeline,
        tail_secs: float = 20.0,
        is_idle: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=speech.sample_rate,
            audio_out_enabled=True,
            audio_out_10ms_chunks=2,
        )
        self._output = FileOutputTransport(params, clock, timeline, output_path)
        idle = is_idle or (lambda: True)
        self._input = FileInputTransport(
            speech, params, clock, timeline, lambda: idle() and not self._output.playing,
            tail_secs,
        )

    def input(self) -> FrameProcessor:
        return self._input

    def output(self) -> FrameProcessor:
        return self._output


class FileRunner:
    """transport=file: one session on ``file.input``; the bot's speech to ``file.output``."""

    def __init__(self, cfg: AppConfig) -> None:
        self._cfg = cfg.file
        # A missing or malformed input fails before anything loads.
        self._speech = read_audio(self._cfg.input, what="--input")

    def _make(self, clock: AppClock, timeline: Timeline) -> FileTransport:
        timeline.audio_from_frames = False  # the output reports when audio really plays
        return FileTransport(
            speech=self._speech,
            output_path=self._cfg.output,
            clock=clock,
            timeline=timeline,
            tail_secs=self._cfg.tail_secs,
            is_idle=timeline.idle,
        )

    async def serve(self, run_session: RunSession) -> None:
        timeline = await run_session(self._make)
        for turn in timeline.turn_summaries():
            logger.info(
                f"turn {turn['turn']}: {turn['text']!r} voice-to-voice "
                f"{turn['voice_to_voice']} s, audio={turn['audio']}"
            )
