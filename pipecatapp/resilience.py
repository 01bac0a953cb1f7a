"""Canned speech, synthesized once at start-up: the apology when a turn fails.

A turn fails when the LLM fails (the LLM service pushes an :class:`LLMFailedFrame`), when the
TTS raises on a sentence, or when the STT raises on an utterance (see fault_guard and
not_understood: both push a :class:`TurnFailedFrame`). The
:class:`ApologyPlayer`, placed right after the TTS, answers it with the pre-rendered apology
as ordinary TTS audio, so the output transport plays it (and interruption stops it) like any
other bot speech. The app keeps listening; the next turn goes to the LLM again.
:class:`CannedSpeechPlayer` is the general form: a frame type in, pre-rendered speech out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipecat.frames.frames import (
    DataFrame,
    Frame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


@dataclass
class TurnFailedFrame(DataFrame):
    """A stage (``llm``, ``tts``, ``stt``) failed this turn (reason is already redacted)."""

    reason: str = ""
    stage: str = ""


@dataclass
class LLMFailedFrame(TurnFailedFrame):
    """The LLM could not answer this turn (reason is already redacted)."""

    stage: str = "llm"


T = TypeVar("T", bound=Frame)


class CannedSpeechPlayer(FrameProcessor, Generic[T]):
    """Answers each ``trigger`` frame (consumed) with pre-synthesized PCM16 mono speech.

    Empty ``audio`` means: stay silent (the frame is still consumed and reported)."""

    def __init__(
        self,
        trigger: type[T],
        audio: bytes,
        sample_rate: int,
        *,
        text: str = "",
        on_play: Callable[[T], None] | None = None,
        chunk_ms: int = 40,
    ) -> None:
        super().__init__()
        self._trigger = trigger
        self._audio = audio
        self._text = text
        self._sample_rate = sample_rate
        self._on_play = on_play
        self._chunk = max(2, int(sample_rate * chunk_ms / 1000) * 2)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, self._trigger):
            if self._on_play:
                self._on_play(frame)
            if self._audio:
                await self._speak()
            return
        await self.push_frame(frame, direction)

    async def _speak(self) -> None:
        context_id = f"canned-{uuid.uuid4().hex[:8]}"
        await self.push_frame(TTSStartedFrame(context_id=context_id))
        for i in range(0, len(self._audio), self._chunk):
            await self.push_frame(
                TTSAudioRawFrame(
                    audio=self._audio[i : i + self._chunk],
                    sample_rate=self._sample_rate,
                    num_channels=1,
                    context_id=context_id,
                )
            )
        if self._text:
            # Queued behind the audio like a TTS service's text: the timeline records it as
            # spoken once played; it is not part of the conversation the LLM sees.
            spoken = TTSTextFrame(self._text, text_type="sentence", context_id=context_id)
            spoken.append_to_context = False
            await self.push_frame(spoken)
        await self.push_frame(TTSStoppedFrame(context_id=context_id))


class ApologyPlayer(CannedSpeechPlayer[TurnFailedFrame]):
    """Turns a TurnFailedFrame (LLMFailedFrame included) into the pre-synthesized apology
    audio (PCM16 mono). ``on_apology`` gets the reason, ``on_failure`` the frame."""

    def __init__(
        self,
        audio: bytes,
        sample_rate: int,
        *,
        text: str = "",
        on_apology: Callable[[str], None] | None = None,
        on_failure: Callable[[TurnFailedFrame], None] | None = None,
        chunk_ms: int = 40,
    ) -> None:
        def report(frame: TurnFailedFrame) -> None:
            if on_apology:
                on_apology(frame.reason)
            if on_failure:
                on_failure(frame)

        super().__init__(
            TurnFailedFrame, audio, sample_rate, text=text, chunk_ms=chunk_ms, on_play=report
        )
