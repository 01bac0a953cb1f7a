"""End the user's turn as soon as the transcript is a finished sentence.

pipecat's ``SpeechTimeoutUserTurnStopStrategy`` always waits ``speech_timeout`` after the VAD
reports silence, in case the user goes on. Once Whisper is fast (0.15 s on a short encoder
window), that wait is the largest piece of the turn end: the transcript is ready 0.15 s after
the VAD stop and the turn still waits until 0.3 s. Lowering the timeout for every turn splits
"Wait, ..." and "Stop! ..." into a one-word turn and the rest (measured: 5 of 14 interrupting
questions in the voice benchmark at 0.15 s).

Whisper's punctuation is a cheap end-of-turn signal for the common case: a transcript of at
least ``min_words`` words that ends with ``.``, ``?`` or ``!`` ends the turn when it arrives;
anything else ("Wait", "Stop!", "Tell me about") still waits the full ``speech_timeout``.
A user who goes on after a finished sentence barges in, which interruption handles.

Built from pipecat's public turn API: :func:`sentence_end_stop_strategies` gives pipecat's
``SpeechTimeoutUserTurnStopStrategy`` followed by :class:`SentenceEndUserTurnStopStrategy`,
which watches the same frames (``process_frame``) and ends the turn early with
``trigger_user_turn_stopped()``; the turn's end resets both.
"""

from __future__ import annotations

import re
import time

from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    STTMetadataFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop import BaseUserTurnStopStrategy, SpeechTimeoutUserTurnStopStrategy

_SENTENCE_END = re.compile(r"[.?!][\"')\]]*\s*$")


def is_finished_sentence(text: str, min_words: int) -> bool:
    """Whether ``text`` ends like a finished sentence and has at least ``min_words`` words.

    An ellipsis (``...``) is a trailing-off, not an end.
    """
    stripped = text.strip()
    if stripped.endswith(("...", "\u2026")):
        return False
    return bool(_SENTENCE_END.search(stripped)) and len(stripped.split()) >= min_words


class SentenceEndUserTurnStopStrategy(BaseUserTurnStopStrategy):
    """Ends the turn when, after the VAD stop, the turn's transcript is a finished sentence.

    Goes after a ``SpeechTimeoutUserTurnStopStrategy`` in the stop strategies, which ends
    every other turn. The STT must be done with the utterance: its transcript is final
    (``TranscriptionFrame.finalized``, as Whisper's per-segment transcripts are), or its
    p99 latency (``STTMetadataFrame``) has passed since the VAD stop.
    """

    def __init__(self, *, min_words: int = 3, **kwargs: object) -> None:
        """Args:
        min_words: words a finished sentence needs to end the turn at once.
        **kwargs: passed to pipecat's BaseUserTurnStopStrategy.
        """
        super().__init__(**kwargs)
        self._min_words = min_words
        self._stt_p99 = 0.0
        self._user_speaking = False
        self._vad_stopped_at: float | None = None  # this turn's VAD stop (monotonic s)
        self._stt_wait = 0.0  # how long after that stop the STT may still be working
        self._final = False  # a final transcript since the user last spoke (or an interim)
        self._stt_done = False  # the STT finished this utterance after the VAD stop
        self._turn_text = ""

    def _forget_the_stop(self) -> None:
        self._vad_stopped_at = None
        self._final = False
        self._stt_done = False

    async def handle_user_turn_started(self) -> None:
        await super().handle_user_turn_started()
        self._turn_text = ""
        self._forget_the_stop()

    async def handle_user_turn_stopped(self) -> None:
        await super().handle_user_turn_stopped()
        self._turn_text = ""
        self._user_speaking = False
        self._forget_the_stop()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, STTMetadataFrame):
            self._stt_p99 = frame.ttfs_p99_latency
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._user_speaking = True
            self._forget_the_stop()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._user_speaking = False
            self._vad_stopped_at = time.monotonic()
            self._stt_wait = max(0.0, self._stt_p99 - frame.stop_secs)
            self._stt_done = self._final or self._stt_wait <= 0
        elif isinstance(frame, InterimTranscriptionFrame):
            self._final = False  # more transcript is on its way
        elif isinstance(frame, TranscriptionFrame):
            # One space between segments: "Wait" + "What is ...?" is not "WaitWhat is ...?".
            self._turn_text = f"{self._turn_text} {frame.text.strip()}".strip()
            if frame.finalized:
                self._final = self._stt_done = True
            if self._ends_the_turn():
                await self.trigger_user_turn_stopped()
        return ProcessFrameResult.CONTINUE

    def _ends_the_turn(self) -> bool:
        if self._user_speaking or self._vad_stopped_at is None:
            return False
        stt_done = self._stt_done or time.monotonic() - self._vad_stopped_at >= self._stt_wait
        return stt_done and is_finished_sentence(self._turn_text, self._min_words)


def sentence_end_stop_strategies(
    *, user_speech_timeout: float, min_words: int = 3, speculate: bool = False
) -> list[BaseUserTurnStopStrategy]:
    """pipecat's speech timeout, short-circuited by a transcript that is a finished sentence.

    Args:
        user_speech_timeout: the wait after the VAD stop for anything else.
        min_words: words a finished sentence needs to end the turn at once.
        speculate: also start the LLM on an eager transcript that is a finished sentence
            (see pipecatapp.speculation).
    """
    sentence_end = SentenceEndUserTurnStopStrategy(min_words=min_words)
    if speculate:
        from pipecatapp.speculation import SpeculatingSentenceEndStrategy

        sentence_end = SpeculatingSentenceEndStrategy(min_words=min_words)
    return [
        SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=user_speech_timeout),
        sentence_end,
    ]
