"""Half-duplex for open speakers without echo cancellation: while the bot speaks (and a short
tail after), the microphone's audio is replaced by silence before it reaches the STT and the
VAD, so the bot neither transcribes nor answers its own voice. The audio clock keeps running
(frames are zeroed, not dropped)."""

from __future__ import annotations

import time

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class HalfDuplexGate(FrameProcessor):
    """Silences user audio while the bot speaks; place it right after the input transport."""

    def __init__(self, *, tail_secs: float = 0.3) -> None:
        super().__init__()
        self._tail_secs = tail_secs
        self._bot_speaking = False
        self._open_at = 0.0

    @property
    def muted(self) -> bool:
        return self._bot_speaking or time.monotonic() < self._open_at

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            self._open_at = time.monotonic() + self._tail_secs
        elif (
            isinstance(frame, InputAudioRawFrame)
            and direction == FrameDirection.DOWNSTREAM
            and self.muted
        ):
            frame.audio = bytes(len(frame.audio))
        await self.push_frame(frame, direction)
