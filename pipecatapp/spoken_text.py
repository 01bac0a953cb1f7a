"""What the bot really said: the text the output transport passed on after playing its audio.

A TTS service queues each sentence's ``TTSTextFrame`` behind that sentence's audio; the
output transport pushes it on (to the assistant aggregator) only once the audio before it was
written to the device, and drops it with the rest of the queue on an interruption. So the
text frames the *output transport* pushes are what the user heard, in whole sentences: the
same text pipecat's context keeps after a barge-in. This observer watches those pushes
(public ``FramePushed.source``) and hands them to the timeline.
"""

from __future__ import annotations

from pipecat.frames.frames import TTSTextFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipecatapp.timeline import Timeline


class SpokenTextObserver(BaseObserver):
    """Reports each TTSTextFrame that ``output`` (the output transport) pushes downstream."""

    def __init__(self, timeline: Timeline, output: FrameProcessor) -> None:
        super().__init__(observe_every_push=True)
        self._timeline = timeline
        self._output = output

    async def on_push_frame(self, data: FramePushed) -> None:
        if (
            data.source is self._output
            and data.direction == FrameDirection.DOWNSTREAM
            and isinstance(data.frame, TTSTextFrame)
        ):
            self._timeline.spoken_text(data.frame.text, data.timestamp / 1e9)
