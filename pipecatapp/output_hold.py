"""Hold the bot's voice on the first window of user speech, before the barge-in is confirmed.

The VAD starts a user turn (and so interrupts the bot) after ``vad.start_secs`` of speech: two
Silero windows at 0.064 s. A one-window start would be 32 ms faster and would let any single
loud window cut the bot off. This keeps both: on the VAD's *starting* state (one window of
speech, the start not yet confirmed) the bot's output stops writing; the next window either
confirms speech, and pipecat's interruption drops what was held, or does not, and the bot
goes on where it stopped. A false alarm costs a gap of a window or two in the bot's voice,
never its answer. A hold ends by itself after ``HOLD_SECS`` in any case.

pipecat has no hook to pause an output transport, so :func:`hold_output` wraps the
transport instance's ``write_audio_frame`` (the method pipecat's media sender awaits for
every chunk). That is this module's one reach past the public API;
``tests/app/test_output_hold.py`` fails if pipecat stops calling it that way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.audio.vad.vad_analyzer import VADState
from pipecat.frames.frames import Frame, InterruptionFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_output import BaseOutputTransport

from pipecatapp.services.early_transcript import PauseWatchingVAD

HOLD_SECS = 0.15  # longest hold: a confirmed start interrupts well before this
POLL_SECS = 0.005


class OutputHold:
    """Whether the bot's output should wait, and for how long at most."""

    def __init__(self, on_event: Callable[[str], None] | None = None) -> None:
        self._until = 0.0
        self._dropped = False
        self._on_event = on_event

    @property
    def held(self) -> bool:
        return time.monotonic() < self._until

    def hold(self, secs: float = HOLD_SECS) -> None:
        self._until = time.monotonic() + secs
        self._dropped = False
        if self._on_event is not None:
            self._on_event("output_hold")

    def release(self) -> None:
        if not self.held:
            return
        self._until = 0.0
        if self._on_event is not None:
            self._on_event("output_resume")

    def drop(self) -> None:
        """An interruption: what is held is not played (the hold ends)."""
        if self.held:
            self._dropped = True
            self._until = 0.0

    async def wait(self) -> bool:
        """Return once no hold is on (at once when none is): True when the held audio was
        dropped by an interruption meanwhile."""
        if not self.held:
            return False
        while self.held:
            await asyncio.sleep(POLL_SECS)
        dropped, self._dropped = self._dropped, False
        return dropped


def hold_output(output: BaseOutputTransport, hold: OutputHold) -> None:
    """Make ``output`` wait for ``hold`` before writing each audio chunk. pipecat's
    interruption drops the queue but lets the chunk being written finish; a chunk that was
    held is not written (:class:`HoldDropper` tells the hold of the interruption)."""
    write: Callable[[OutputAudioRawFrame], Awaitable[bool]] = output.write_audio_frame

    async def held_write(frame: OutputAudioRawFrame) -> bool:
        if await hold.wait():
            return False  # not written, so not passed on as played
        return await write(frame)

    output.write_audio_frame = held_write  # type: ignore[method-assign]


class HoldDropper(FrameProcessor):
    """Placed right before the output transport: an interruption drops what is held."""

    def __init__(self, hold: OutputHold) -> None:
        super().__init__()
        self._hold = hold

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._hold.drop()
        await self.push_frame(frame, direction)


class HoldingVAD(PauseWatchingVAD):
    """The app's VAD, which also holds the bot's output while a start is unconfirmed."""

    def __init__(self, *, hold: OutputHold | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold = hold
        self._hold_state = VADState.QUIET

    async def analyze_audio(self, buffer: bytes) -> VADState:
        state = await super().analyze_audio(buffer)
        if self.hold is not None and state != self._hold_state:
            if state == VADState.STARTING:
                self.hold.hold()
            elif self._hold_state == VADState.STARTING and state == VADState.QUIET:
                self.hold.release()
        self._hold_state = state
        return state
