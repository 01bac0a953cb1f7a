"""Start the LLM on the transcript of the user's pause, before the turn is confirmed.

Whisper transcribes the pause (``stt.early_secs``) before the VAD confirms the end of speech
(``vad.stop_secs``); when it finishes first, its transcript waits for the VAD stop, and the
LLM waits for the turn end after that. With ``turn.speculate`` the STT offers that transcript
as pipecat's ``EagerTranscriptionFrame``, and :class:`SpeculatingSentenceEndStrategy` starts
the LLM on it through pipecat's turn-speculation API:

- ``trigger_user_turn_inference_triggered(speculation=...)``: the user aggregator runs the
  inference on a provisional copy of the context; the LLM service's ``SpeculationGate``
  holds everything the answer produces;
- the turn ends exactly as without speculation (a finished sentence after the VAD stop, see
  :mod:`pipecatapp.turnstop`); if the committed transcript is the one answered (pipecat's
  ``NormalizedMatch``), ``trigger_user_turn_finalized(confirms_speculation=True)`` writes the
  user message and the held answer is released, with no second inference;
- otherwise it is withdrawn (``EagerEndOfTurnCancelFrame``, which stops the LLM and makes the
  gate drop the answer): when the committed transcript differs, when the turn ends another
  way, after ``timeout``, or when the user goes on after the pause (then the STT sends the
  cancel frame itself, as a streaming STT service does).

pipecat's ``EagerUserTurnStopStrategy`` does this for an STT service that also decides the
end of the turn (Deepgram Flux); here the VAD and the sentence end decide it, so this is its
counterpart on :class:`~pipecatapp.turnstop.SentenceEndUserTurnStopStrategy`, built from the
same public pieces. ``started``, ``kept`` and ``withdrawn`` count the outcomes, and each is
logged (``speculative answer kept`` / ``withdrawn``): the benchmark reads its cancel rate
from them.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from pipecat.frames.frames import (
    EagerEndOfTurnCancelFrame,
    EagerTranscriptionFrame,
    Frame,
    TranscriptionFrame,
)
from pipecat.turns.types import ProcessFrameResult, UserTurnSpeculation
from pipecat.turns.user_stop import EagerMatchPolicy, NormalizedMatch

from pipecatapp.turnstop import SentenceEndUserTurnStopStrategy, is_finished_sentence

DEFAULT_TIMEOUT_SECS = 5.0


class SpeculatingSentenceEndStrategy(SentenceEndUserTurnStopStrategy):
    """SentenceEndUserTurnStopStrategy that answers an eager transcript while the turn is open.

    A speculation starts on an ``EagerTranscriptionFrame`` whose text (after what the turn
    already committed) is a finished sentence, the only kind that ends the turn as soon as
    it is committed; anything else would wait ``turn.speech_timeout`` anyway.
    """

    def __init__(self, *, min_words: int = 3, timeout: float = DEFAULT_TIMEOUT_SECS,
                 match_policy: EagerMatchPolicy | None = None, **kwargs: object) -> None:
        """Args:
        min_words: words a finished sentence needs (to end the turn, and to speculate).
        timeout: seconds a speculation may stay unresolved before it is withdrawn.
        match_policy: whether the committed transcript is the one answered (default:
            pipecat's NormalizedMatch: case, punctuation and spacing aside).
        **kwargs: passed to SentenceEndUserTurnStopStrategy.
        """
        super().__init__(min_words=min_words, **kwargs)
        self._timeout = timeout
        self._match = match_policy or NormalizedMatch()
        self._speculation: UserTurnSpeculation | None = None
        self._timer: asyncio.Task[None] | None = None
        self.started = 0
        self.kept = 0
        self.withdrawn = 0

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, EagerTranscriptionFrame):
            await self._speculate(frame.text)
        elif isinstance(frame, EagerEndOfTurnCancelFrame) and await self._take() is not None:
            # The STT's: the user went on after the pause. The frame itself reaches the LLM
            # (which stops) and its gate (which drops the answer); only our state is left.
            self._count_withdrawn("the user went on")
        result = await super().process_frame(frame)
        # A committed transcript that does not say what was answered voids the answer now,
        # rather than when the turn ends (the LLM stops sooner).
        speculation = self._speculation
        if isinstance(frame, TranscriptionFrame) and speculation is not None \
                and not self._match.matches(speculation.text, self._turn_text):
            await self._withdraw("the committed transcript differs")
        return result

    async def trigger_user_turn_stopped(self, *,
                                        enable_user_speaking_frames: bool | None = None) -> None:
        """End the turn; keep the answer in flight if it answered the committed transcript."""
        speculation = await self._take()
        if speculation is not None and self._match.matches(speculation.text, self._turn_text):
            self.kept += 1
            logger.info(f"speculative answer kept ({self.kept} kept, "
                        f"{self.withdrawn} withdrawn)")
            await self.trigger_user_turn_finalized(
                enable_user_speaking_frames=enable_user_speaking_frames,
                confirms_speculation=True)
            return
        if speculation is not None:
            await self._cancel("the committed transcript differs")
        await super().trigger_user_turn_stopped(
            enable_user_speaking_frames=enable_user_speaking_frames)

    async def handle_user_turn_started(self) -> None:
        await self._withdraw("a new turn started")
        await super().handle_user_turn_started()

    async def handle_user_turn_stopped(self) -> None:
        # Called before the turn end is broadcast, so the withdrawal reaches the gate first.
        await self._withdraw("the turn ended another way")
        await super().handle_user_turn_stopped()

    async def cleanup(self) -> None:
        await self._take()
        await super().cleanup()

    async def _speculate(self, eager: str) -> None:
        text = f"{self._turn_text} {eager.strip()}".strip()
        if self._speculation is not None or not is_finished_sentence(text, self._min_words):
            return
        self._speculation = speculation = UserTurnSpeculation(text=text)
        self._timer = self.task_manager.create_task(
            self._expire(speculation), f"{self}::speculation_timeout")
        self.started += 1
        logger.debug(f"{self}: answering [{text}] before the turn is confirmed")
        await self.trigger_user_turn_inference_triggered(speculation=speculation)

    async def _expire(self, speculation: UserTurnSpeculation) -> None:
        await asyncio.sleep(self._timeout)
        self._timer = None
        if self._speculation is speculation:
            self._speculation = None
            await self._cancel(f"unresolved after {self._timeout:g} s")

    async def _take(self) -> UserTurnSpeculation | None:
        """The speculation in flight, now resolved (its timer stopped)."""
        speculation, self._speculation = self._speculation, None
        timer, self._timer = self._timer, None
        if timer is not None:
            await self.cancel_task(timer)
        return speculation

    async def _withdraw(self, why: str) -> None:
        if await self._take() is not None:
            await self._cancel(why)

    async def _cancel(self, why: str) -> None:
        self._count_withdrawn(why)
        await self.trigger_user_turn_speculation_cancelled()

    def _count_withdrawn(self, why: str) -> None:
        self.withdrawn += 1
        logger.info(f"speculative answer withdrawn, {why} ({self.kept} kept, "
                    f"{self.withdrawn} withdrawn)")
