"""A user turn that was not understood never reaches the LLM; the bot says so at once.

The STT judges each utterance (see services/bounded_whisper): understood text goes on as a
``TranscriptionFrame``; anything else becomes a :class:`SpeechNotUnderstoodFrame` with the
reason (``no_transcript``, ``low_confidence``, or ``noise``). Then, with pipecat's public
turn API:

- the user aggregator is built with ``empty_user_turn=None``, so a turn without a transcript
  never runs the LLM (pipecat would otherwise run it with a "the user may have said
  something" note when the turn interrupted the bot, or before its first answer);
- :class:`NotUnderstoodUserTurnStopStrategy` ends such a turn as soon as the verdict arrives
  (pipecat would wait for its 5 s user-turn-stop timeout) and, unless it was noise, pushes a
  :class:`SayNotUnderstoodFrame` (an STT that raised gets the apology instead: a
  ``TurnFailedFrame``);
- a :class:`~pipecatapp.resilience.CannedSpeechPlayer` after the TTS answers that frame with
  "Sorry, I didn't catch that." (``tts.not_understood``, synthesized at start-up).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import (
    DataFrame,
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop import BaseUserTurnStopStrategy

from pipecatapp.resilience import TurnFailedFrame

NOT_UNDERSTOOD_REASONS = ("no_transcript", "low_confidence")
NOISE = "noise"
STT_FAILED = "stt_failed"  # the engine raised: the turn gets the apology instead


@dataclass
class SpeechNotUnderstoodFrame(DataFrame):
    """The STT's verdict on an utterance it did not understand.

    Parameters:
        reason: ``no_transcript``, ``low_confidence``, ``noise`` or ``stt_failed``.
        error: why the engine failed (``stt_failed``; redacted).
        text: the unsure text (never sent to the LLM; empty for no_transcript).
        stt_secs: seconds the decode took; attempts: decodes run; cut: a retry was not
            started because it would have run past the bound (``stt.max_secs``).
    """

    reason: str = ""
    text: str = ""
    stt_secs: float = 0.0
    attempts: int = 1
    cut: bool = False
    error: str = ""


@dataclass
class SayNotUnderstoodFrame(DataFrame):
    """Ask the not-understood player to say so (reason as in SpeechNotUnderstoodFrame)."""

    reason: str = ""


class NotUnderstoodUserTurnStopStrategy(BaseUserTurnStopStrategy):
    """Ends a user turn when the STT reports its speech was not understood."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._in_turn = False
        self._vad_speaking = False
        self._heard_text = False

    async def handle_user_turn_started(self) -> None:
        await super().handle_user_turn_started()
        self._in_turn = True
        self._heard_text = False

    async def handle_user_turn_stopped(self) -> None:
        await super().handle_user_turn_stopped()
        self._in_turn = False
        self._heard_text = False

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._vad_speaking = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._vad_speaking = False
        elif isinstance(frame, TranscriptionFrame):
            self._heard_text = True
        elif isinstance(frame, SpeechNotUnderstoodFrame):
            await self._on_not_understood(frame)
        return ProcessFrameResult.CONTINUE

    async def _on_not_understood(self, frame: SpeechNotUnderstoodFrame) -> None:
        if not self._in_turn or self._vad_speaking:
            return  # the user is speaking again: the turn goes on
        heard_text = self._heard_text
        await self.trigger_user_turn_stopped()
        if heard_text or frame.reason == NOISE:
            return
        if frame.reason == STT_FAILED:
            await self.push_frame(TurnFailedFrame(reason=frame.error, stage="stt"))
        else:
            await self.push_frame(SayNotUnderstoodFrame(reason=frame.reason))
