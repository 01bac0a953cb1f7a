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
"""

from __future__ import annotations

import re

from pipecat.frames.frames import TranscriptionFrame
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy

_SENTENCE_END = re.compile(r"[.?!][\"')\]]*\s*$")


def is_finished_sentence(text: str, min_words: int) -> bool:
    """Whether ``text`` ends like a finished sentence and has at least ``min_words`` words.

    An ellipsis (``...``) is a trailing-off, not an end.
    """
    stripped = text.strip()
    if stripped.endswith(("...", "\u2026")):
        return False
    return bool(_SENTENCE_END.search(stripped)) and len(stripped.split()) >= min_words


class SentenceEndUserTurnStopStrategy(SpeechTimeoutUserTurnStopStrategy):
    """``speech_timeout``, short-circuited by a transcript that is a finished sentence."""

    def __init__(
        self, *, user_speech_timeout: float, min_words: int = 3, **kwargs: object
    ) -> None:
        """Args:
        user_speech_timeout: the wait after the VAD stop for anything else.
        min_words: words a finished sentence needs to end the turn at once.
        **kwargs: passed to pipecat's SpeechTimeoutUserTurnStopStrategy.
        """
        super().__init__(user_speech_timeout=user_speech_timeout, **kwargs)
        self._min_words = min_words

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        await super()._handle_transcription(frame)
        if (
            self._vad_stopped
            and not self._vad_user_speaking
            and self._stt_wait_done
            and not self._user_speech_wait_done
            and is_finished_sentence(self._text, self._min_words)
        ):
            # The speech-timeout timer has nothing left to protect: stop it and end the turn.
            if self._user_speech_timeout_task:
                await self.task_manager.cancel_task(self._user_speech_timeout_task)
                self._user_speech_timeout_task = None
            self._user_speech_wait_done = True
            await self._maybe_trigger_user_turn_stopped()
