"""Transcribe in the user's pause, before the VAD has confirmed that speech ended.

The VAD ends speech after ``vad.stop_secs`` (0.2 s) of silence, and only then does the STT
start (Whisper base: 0.15-0.2 s on two cores). The first part of that silence already tells
that the user has probably finished. :class:`PauseWatchingVAD` (pipecat's Silero VAD with its
public ``analyze_audio`` watched) tells a listener when the user has been silent for
``pause_secs`` and when they speak again. :class:`EarlyTranscript` keeps the STT's own copy
of the segment's audio, starts one transcription at the pause, and hands its result to the
STT at the VAD stop only if nobody spoke since and the segment pipecat hands over begins with
exactly the audio that was transcribed. Otherwise the transcription is discarded (after it
finishes, so that two never compete for the cores; it starts no further retry once it is
thrown away) and the segment is transcribed as usual.

The turn still ends where it did (after the VAD stop, by the turn stop strategy); only the
transcript is ready sooner. With ``turn.speculate`` the STT also offers a transcript that is
ready before the VAD stop, so that the LLM can start on it (see pipecatapp/speculation.py).
The cost is a transcription for every pause the user goes on after; ``used`` and
``discarded`` count both outcomes, and each is logged.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADState

T = TypeVar("T")


@runtime_checkable
class PauseListener(Protocol):
    """Told by :class:`PauseWatchingVAD` when the user pauses and speaks again."""

    def user_paused(self) -> None: ...

    def user_resumed(self) -> None: ...


class PauseWatchingVAD(SileroVADAnalyzer):
    """Silero VAD that also tells ``listener`` when speech has paused for ``pause_secs``.

    "Paused" is the VAD's own stopping state (speech went quiet, the stop not yet confirmed)
    lasting ``pause_secs``; "resumed" is the VAD hearing speech again after such a pause. A
    pause that reaches ``vad.stop_secs`` ends speech as before; ``pause_secs`` at or above it
    never fires.
    """

    def __init__(self, *, pause_secs: float, listener: PauseListener | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pause_secs = pause_secs
        self.listener = listener
        self._pause_watch_quiet = 0.0  # seconds of audio seen in the stopping state
        self._pause_watch_told = False  # the listener was told of this pause

    async def analyze_audio(self, buffer: bytes) -> VADState:
        state = await super().analyze_audio(buffer)
        if self.listener is None or self.pause_secs <= 0:
            return state
        if state == VADState.STOPPING:
            self._pause_watch_quiet += len(buffer) / (2 * self.num_channels * self.sample_rate)
            if not self._pause_watch_told and self._pause_watch_quiet >= self.pause_secs:
                self._pause_watch_told = True
                self.listener.user_paused()
            return state
        if state == VADState.SPEAKING and self._pause_watch_told:
            self.listener.user_resumed()
        self._pause_watch_quiet = 0.0
        self._pause_watch_told = False
        return state


class EarlyTranscript(Generic[T]):
    """The STT's copy of the segment's audio, and the one transcription started at a pause.

    Mirrors pipecat's SegmentedSTTService: the audio grows while the user speaks and keeps
    its last second otherwise, and starts over when speech stops.
    """

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self.audio = bytearray()
        self.speaking = False
        self.used = 0
        self.discarded = 0
        self._snapshot = b""
        self._task: asyncio.Task[T] | None = None
        self._valid = False
        self.stop = threading.Event()
        """Set when the running transcription is thrown away: it starts no further retry."""

    def add_audio(self, pcm: bytes) -> None:
        self.audio += pcm
        if not self.speaking and len(self.audio) > self.keep_bytes:
            del self.audio[: len(self.audio) - self.keep_bytes]

    def speech_started(self) -> None:
        self.speaking = True

    def speech_stopped(self) -> None:
        self.speaking = False
        self.audio.clear()

    def start(self, transcribe: Callable[[bytes], Awaitable[T]],
              create_task: Callable[[Awaitable[T]], asyncio.Task[T]]) -> bool:
        """Transcribe the audio so far, unless a transcription is still running."""
        if not self.speaking or (self._task is not None and not self._task.done()):
            return False
        self._snapshot = bytes(self.audio)
        self.stop = threading.Event()  # before the transcription reads it
        self._task = create_task(transcribe(self._snapshot))
        self._valid = True
        return True

    def standing(self, stop: threading.Event) -> bool:
        """Whether the transcription ``stop`` belongs to still stands for the speech: nobody
        spoke since it started and the VAD has not stopped yet (at the stop it is taken)."""
        return self._valid and self.speaking and self.stop is stop and not stop.is_set()

    def resumed(self) -> None:
        if self._task is not None and self._valid:
            self._valid = False
            self._discard("the user went on")

    def _discard(self, why: str) -> None:
        self.stop.set()
        self.discarded += 1
        logger.info(f"early transcript discarded, {why} "
                    f"({self.used} used, {self.discarded} discarded)")

    async def take(self, segment: bytes) -> T | None:
        """The early transcription's result if it stands for ``segment``, else None."""
        task, valid, snapshot = self._task, self._valid, self._snapshot
        self._task, self._valid, self._snapshot = None, False, b""
        if task is None:
            return None
        if valid and segment.startswith(snapshot):
            self.used += 1
            logger.info(f"early transcript used ({self.used} used, {self.discarded} discarded)")
            return await task
        if valid:
            self._discard("the segment is not the audio it transcribed")
        # Let it finish, so that two never share the cores; it starts no further retry.
        self.stop.set()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            logger.debug(f"the discarded early transcription failed: {task.exception()!r}")
        return None
