"""What the bot really said: the text the output transport passed on after playing its audio.

A TTS service queues each sentence's ``TTSTextFrame`` behind that sentence's audio; the
output transport pushes it on (to the assistant aggregator) only once the audio before it was
written to the device, and drops it with the rest of the queue on an interruption. So the
text frames that come *out of the output transport* are what the user heard, in whole
sentences: the same text pipecat's context keeps after a barge-in. :class:`SpokenTextTap`
sits right after the output transport and hands them to the timeline.

(A processor, not an observer: an observer that sees every push of every frame queues
hundreds of audio-frame events a second and falls behind on a busy CPU.)
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, TTSTextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecatapp.timeline import Timeline


class SpokenTextTap(FrameProcessor):
    """Passes every frame on; reports each downstream TTSTextFrame as spoken."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__()
        self._timeline = timeline

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSTextFrame) and direction == FrameDirection.DOWNSTREAM:
            self._timeline.spoken_text(frame.text)
        await self.push_frame(frame, direction)
