"""A fault in the middle of a turn costs that turn only, and the user hears why at once.

:class:`TurnFaultGuard` sits between the LLM and the TTS. It acts when

- the TTS reports an error with an exception (an exception raised on a sentence becomes
  an ``ErrorFrame`` pushed upstream by pipecat, or by our adapters; pipecat's notices
  without one, such as "TTS context ... completed with no audio", are left alone), or
- the LLM fails after part of its answer was already on its way (a server killed
  mid-stream: the LLM service then pushes an ``LLMFailedFrame`` after the text).

It then broadcasts an ``InterruptionFrame`` (public pipecat frame; ``broadcast_frame`` sends
it both ways): upstream it stops the LLM's stream, downstream it drops what the TTS and the
output still hold, and the assistant aggregator keeps only what was spoken, as after a
barge-in. Then it sends a :class:`~pipecatapp.resilience.TurnFailedFrame` on, so the
apology player speaks the apology right away instead of after the rest of a long answer.
The session goes on: the next user turn runs as usual. At most one apology per answer.
"""

from __future__ import annotations

from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecatapp.errors import redact
from pipecatapp.resilience import LLMFailedFrame, TurnFailedFrame


class TurnFaultGuard(FrameProcessor):
    """Turns a mid-turn TTS error or LLM failure into interruption + apology."""

    def __init__(self, tts: FrameProcessor) -> None:
        super().__init__()
        self._tts = tts
        self._text_sent = False  # LLM text of the current answer went to the TTS
        self._failed = False  # this answer already cost an apology

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMFullResponseStartFrame):
            self._text_sent = False
            self._failed = False
        elif isinstance(frame, LLMTextFrame):
            self._text_sent = True
        elif (
            isinstance(frame, ErrorFrame)
            and direction == FrameDirection.UPSTREAM
            and frame.processor is self._tts
            and frame.exception is not None
        ):
            await self.push_frame(frame, direction)
            await self._fail("tts", redact(str(frame.error)))
            return
        elif isinstance(frame, LLMFailedFrame) and self._text_sent:
            await self._fail("llm", frame.reason)
            return
        await self.push_frame(frame, direction)

    async def _fail(self, stage: str, reason: str) -> None:
        if self._failed:
            return
        self._failed = True
        logger.error(f"{self}: the {stage} failed mid-turn ({reason}); stopping the turn")
        await self.broadcast_frame(InterruptionFrame)
        await self.push_frame(TurnFailedFrame(reason=reason, stage=stage))
