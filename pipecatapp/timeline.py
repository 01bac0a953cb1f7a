"""Per-turn timeline as JSON lines, built by a pipecat observer.

Every line is a JSON object with ``t`` (seconds on the app clock, which starts when the app
starts; in file mode input and output audio are placed on the same clock) and ``event``.
Event lines are written as they happen; a ``turn`` line summarizes each user turn once it is
over (the README's voice app section lists the fields). Nothing here prints: the observer
watches the frames.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from loguru import logger
from pipecat.clocks.base_clock import BaseClock
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from pipecatapp.errors import redact
from pipecatapp.not_understood import SpeechNotUnderstoodFrame


def read_timeline(path: str | Path) -> list[dict[str, Any]]:
    """The events of a timeline file, in order (none when it does not exist yet). A line that
    is still being written (no newline yet) is left for the next read."""
    p = Path(path)
    if not p.is_file():
        return []
    text = p.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


class AppClock(BaseClock):
    """A monotonic clock with a fixed origin, shared by the pipeline, the transports and the
    timeline, so that every timestamp is on one axis."""

    def __init__(self) -> None:
        self._origin = time.monotonic_ns()

    def get_time(self) -> int:
        return time.monotonic_ns() - self._origin

    def start(self) -> None:  # the origin is fixed at construction
        return None

    def now(self) -> float:
        """Seconds since the origin."""
        return self.get_time() / 1e9

    def to_app(self, monotonic_s: float) -> float:
        """A time.monotonic() value on this clock."""
        return monotonic_s - self._origin / 1e9


@dataclass
class Turn:
    """What happened in one user turn, and the bot's answer to it."""

    index: int
    user_speech_start: float | None = None
    user_speech_stop: float | None = None
    user_turn_stop: float | None = None
    stt_final: float | None = None
    text: str = ""
    llm_start: float | None = None
    llm_first_token: float | None = None
    llm_end: float | None = None
    llm_chars: int = 0
    reply: str = ""  # what the LLM generated for this turn
    spoken: list[str] = field(default_factory=list)  # what the output really played
    llm_error: str | None = None
    tts_first_audio: float | None = None
    bot_audio_start: float | None = None
    bot_audio_stop: float | None = None
    apology: bool = False
    interrupted: bool = False
    interrupted_at: float | None = None
    barge_in_onset: float | None = None
    pipecat_latency: float | None = None
    llm_started: bool = False
    not_understood: str | None = None  # no_transcript / low_confidence / noise
    closed: bool = False  # the user's turn is over without an LLM answer (not understood)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        v2v = None
        if self.bot_audio_start is not None and self.user_speech_stop is not None:
            v2v = self.bot_audio_start - self.user_speech_stop
        barge = None
        if self.barge_in_onset is not None and self.bot_audio_stop is not None:
            # a gap between sentences can leave the last sample just before the onset: 0 then
            barge = max(0.0, self.bot_audio_stop - self.barge_in_onset)
        return {
            "event": "turn",
            "turn": self.index,
            "text": self.text.strip(),
            "user_speech_start": r(self.user_speech_start),
            "user_speech_stop": r(self.user_speech_stop),
            "user_turn_stop": r(self.user_turn_stop),
            "stt_final": r(self.stt_final),
            "llm_first_token": r(self.llm_first_token),
            "llm_end": r(self.llm_end),
            "llm_chars": self.llm_chars,
            "reply": self.reply.strip(),
            "spoken": " ".join(t.strip() for t in self.spoken if t.strip()),
            "llm_error": self.llm_error,
            "tts_first_audio": r(self.tts_first_audio),
            "bot_audio_start": r(self.bot_audio_start),
            "bot_audio_stop": r(self.bot_audio_stop),
            "apology": self.apology,
            "not_understood": self.not_understood,
            "interrupted": self.interrupted,
            "barge_in_onset": r(self.barge_in_onset),
            "barge_in_latency": r(barge),
            "voice_to_voice": r(v2v),
            "pipecat_latency": r(self.pipecat_latency),
            "audio": self.bot_audio_start is not None,
            **self.extra,
        }


class Timeline:
    """Writes timeline events and turn summaries as JSON lines (to a file, or only to memory)."""

    def __init__(self, clock: AppClock, path: str | Path | None = None) -> None:
        self.clock = clock
        self.events: list[dict[str, Any]] = []
        self.turns: list[Turn] = []
        self._file: IO[str] | None = None
        if path:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            self._file = p.open("w", encoding="utf-8")
        self._current: Turn | None = None  # the user turn being listened to / answered
        self._speaking: Turn | None = None  # the turn whose answer is being played
        self._bot_playing = False
        self._input_onsets: list[float] = []  # ground-truth speech onsets (file input)
        self._input_offsets: list[float] = []
        self._closed = False
        self.last_event = 0.0
        # Where bot audio start/stop come from: the transport's output clock (file transport
        # sets this False and reports them itself) or pipecat's Bot*SpeakingFrames.
        self.audio_from_frames = True

    def quiet_for(self) -> float:
        """Seconds since the last event."""
        return self.clock.now() - self.last_event

    def awaiting_answer(self) -> bool:
        """Whether the user said something the bot has not answered yet."""
        t = self._current
        if t is None or t.apology or t.bot_audio_start is not None:
            return False
        if t.closed and not t.extra.get("reply_pending"):
            return False
        if t.llm_end is not None and t.llm_chars == 0:
            return False
        return bool(t.text.strip()) or t.user_speech_start is not None

    def idle(self) -> bool:
        """Nothing left to answer (or nothing happened for a while)."""
        quiet = self.quiet_for()
        return quiet >= 1.0 and (not self.awaiting_answer() or quiet >= 5.0)

    # -- writing ---------------------------------------------------------------------------

    def write(self, event: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
        record = {"t": round(self.clock.now() if t is None else t, 4), "event": event, **fields}
        self.events.append(record)
        self.last_event = max(self.last_event, self.clock.now())
        if self._file and not self._file.closed:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        return record

    def _new_turn(self) -> Turn:
        turn = Turn(index=len(self.turns) + 1)
        self.turns.append(turn)
        return turn

    def _finish_turn(self, turn: Turn) -> None:
        if turn.extra.get("_written"):
            return
        turn.extra["_written"] = True
        summary = turn.summary()
        summary.pop("_written", None)
        summary.pop("reply_pending", None)
        if turn.not_understood == "noise":
            # not a user turn: a sound the VAD took for speech, answered with silence
            self.write("noise", t=turn.user_speech_start, turn=turn.index,
                       heard=turn.extra.get("heard", ""))
            return
        if not summary["audio"] and turn.not_understood:
            summary["no_audio_reason"] = f"not understood ({turn.not_understood})"
        elif not summary["audio"]:
            reason = turn.llm_error or ("no transcript" if not turn.text.strip() else "no audio")
            summary["no_audio_reason"] = reason
            logger.warning(f"turn {turn.index} produced no audio: {reason}")
        self.write("turn", **{k: v for k, v in summary.items() if k != "event"})

    def _maybe_finish(self, turn: Turn | None) -> None:
        if turn is None or turn is self._current or turn is self._speaking:
            return
        self._finish_turn(turn)

    # -- events from the transports (output clock, ground-truth input) ---------------------

    def input_speech(self, onset: float, offset: float) -> None:
        """A speech segment of the input file, found by energy, placed on the app clock."""
        self._input_onsets.append(onset)
        self._input_offsets.append(offset)
        self.write("input_speech", t=onset, end=round(offset, 4))

    def bot_audio_started(self, t: float) -> None:
        """The output device started playing bot speech at ``t``."""
        self._bot_playing = True
        turn = self._current if self._current and self._current.llm_started else self._speaking
        if turn is None:
            turn = self._current or self._new_turn()
        self._speaking = turn
        if turn.bot_audio_start is None:
            turn.bot_audio_start = t
        self.write("bot_audio_start", t=t, turn=turn.index)

    def bot_audio_stopped(self, t: float) -> None:
        """The output device played the last sample of bot speech at ``t``."""
        self._bot_playing = False
        turn = self._speaking
        if turn is not None:
            turn.bot_audio_stop = t
        self.write("bot_audio_stop", t=t, turn=turn.index if turn else None)
        self._speaking = None
        self._maybe_finish(turn)

    def spoken_text(self, text: str, t: float | None = None) -> None:
        """The output played ``text`` (a sentence of bot speech, pushed after its audio)."""
        turn = self._speaking or self._current
        if turn is None:
            return
        turn.spoken.append(text)
        self.write("bot_spoken", t=t, turn=turn.index, text=text.strip())

    def not_understood(self, reason: str, text: str, **fields: Any) -> None:
        """The STT's verdict: the current turn's speech was not understood."""
        turn = self._current or self._new_turn()
        self._current = turn
        turn.not_understood = reason
        turn.closed = True
        if reason == "stt_failed":
            turn.extra["failed_stage"] = "stt"
        if text:
            turn.extra["heard"] = text.strip()
        turn.extra["reply_pending"] = reason != "noise"
        self.write("not_understood", turn=turn.index, reason=reason, heard=text.strip(),
                   **fields)
        if reason == "noise" and turn is not self._speaking:
            self._current = None
            self._finish_turn(turn)

    def not_understood_reply(self, reason: str, audible: bool) -> None:
        """The bot says it did not catch that (or stays silent: ``tts.not_understood`` off)."""
        turn = self._current or self._new_turn()
        turn.extra["reply_pending"] = False
        self.write("not_understood_reply", turn=turn.index, reason=reason, audible=audible)

    def apology(self) -> None:
        turn = self._current or self._new_turn()
        turn.apology = True
        self.write("apology", turn=turn.index)

    def turn_failed(self, stage: str, reason: str) -> None:
        """A stage (llm, tts, stt) failed this turn; the apology follows."""
        if stage == "llm":
            self.llm_failed(reason)
            return
        turn = self._current or self._new_turn()
        turn.extra["failed_stage"] = stage
        turn.extra["error"] = redact(reason)
        self.write("turn_failed", turn=turn.index, stage=stage, error=turn.extra["error"])

    def llm_failed(self, reason: str) -> None:
        turn = self._current or self._new_turn()
        turn.llm_error = redact(reason)
        self.write("llm_error", turn=turn.index, error=turn.llm_error)

    # -- events from the observer -------------------------------------------------------------

    def on_frame(self, frame: Any, t: float) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            onset = t - frame.start_secs
            self.write("vad_start", t=t, speech_start=round(onset, 4))
            if self._current is None or self._current.llm_started or self._current.closed:
                previous = self._current
                self._current = self._new_turn()
                self._maybe_finish(previous)
            if self._current.user_speech_start is None:
                self._current.user_speech_start = self._ground_truth_onset(onset)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            stop = t - frame.stop_secs
            self.write("vad_stop", t=t, speech_stop=round(stop, 4))
            if self._current is not None:
                self._current.user_speech_stop = self._ground_truth_offset(stop)
        elif isinstance(frame, UserStartedSpeakingFrame):
            self.write("user_turn_start", t=t, turn=self._current.index if self._current else None)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            if self._current is not None:
                self._current.user_turn_stop = t
            self.write("user_turn_stop", t=t, turn=self._current.index if self._current else None)
        elif isinstance(frame, InterimTranscriptionFrame):
            self.write("stt_interim", t=t, text=frame.text)
        elif isinstance(frame, TranscriptionFrame):
            if self._current is None:
                self._current = self._new_turn()
            self._current.stt_final = t
            self._current.text += " " + frame.text
            self.write("stt_final", t=t, turn=self._current.index, text=frame.text.strip())
        elif isinstance(frame, LLMFullResponseStartFrame):
            turn = self._current or self._new_turn()
            self._current = turn
            turn.llm_started = True
            turn.llm_start = t
            self.write("llm_start", t=t, turn=turn.index)
        elif isinstance(frame, LLMTextFrame):
            turn = self._current
            if turn is not None:
                if turn.llm_first_token is None:
                    turn.llm_first_token = t
                    self.write("llm_first_token", t=t, turn=turn.index)
                turn.llm_chars += len(frame.text)
                turn.reply += frame.text
        elif isinstance(frame, LLMFullResponseEndFrame):
            turn = self._current
            if turn is not None:
                turn.llm_end = t
            self.write("llm_end", t=t, turn=turn.index if turn else None)
        elif isinstance(frame, TTSAudioRawFrame):
            turn = self._current
            if turn is not None and turn.llm_started and turn.tts_first_audio is None:
                turn.tts_first_audio = t
                self.write("tts_first_audio", t=t, turn=turn.index)
        elif isinstance(frame, InterruptionFrame):
            turn = self._speaking
            if turn is not None and self._bot_playing:
                turn.interrupted = True
                turn.interrupted_at = t
                turn.barge_in_onset = self._latest_onset_before(t)
            self.write("interruption", t=t, turn=turn.index if turn else None)
        elif isinstance(frame, BotStartedSpeakingFrame):
            self.write("bot_started_speaking", t=t)
            if self.audio_from_frames:
                self.bot_audio_started(t)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.write("bot_stopped_speaking", t=t)
            if self.audio_from_frames:
                self.bot_audio_stopped(t)
        elif isinstance(frame, LLMContextFrame):
            messages = frame.context.get_messages()
            chars = sum(len(m["content"]) for m in messages
                        if isinstance(m, dict) and isinstance(m.get("content"), str))
            self.write("llm_context", t=t, turn=self._current.index if self._current else None,
                       messages=len(messages), chars=chars)
        elif isinstance(frame, SpeechNotUnderstoodFrame):
            self.not_understood(frame.reason, frame.text, stt_secs=frame.stt_secs,
                                attempts=frame.attempts, cut=frame.cut)
        elif isinstance(frame, ErrorFrame):
            self.write("error", t=t, error=redact(str(frame.error)))

    def pipecat_latency(self, secs: float) -> None:
        turn = self._speaking or self._current
        if turn is not None and turn.pipecat_latency is None:
            turn.pipecat_latency = secs

    def _ground_truth_onset(self, vad_onset: float) -> float:
        # In file mode the input's real onset is known; use the one nearest the VAD's guess.
        near = [o for o in self._input_onsets if abs(o - vad_onset) < 0.6]
        return min(near, key=lambda o: abs(o - vad_onset)) if near else vad_onset

    def _ground_truth_offset(self, vad_offset: float) -> float:
        near = [o for o in self._input_offsets if abs(o - vad_offset) < 0.6]
        return min(near, key=lambda o: abs(o - vad_offset)) if near else vad_offset

    def _latest_onset_before(self, t: float) -> float | None:
        before = [o for o in self._input_onsets if o <= t]
        if before:
            return max(before)
        return self._current.user_speech_start if self._current else None

    # -- end ------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._speaking = None
        self._current = None
        for turn in self.turns:
            self._finish_turn(turn)
        if self._file:
            self._file.close()

    def turn_summaries(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "turn"]


class TimelineObserver(BaseObserver):
    """Feeds each frame, once, from the processor that first pushed it, into a Timeline."""

    WATCHED = (
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        InterimTranscriptionFrame,
        TranscriptionFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        LLMFullResponseEndFrame,
        TTSAudioRawFrame,
        InterruptionFrame,
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        SpeechNotUnderstoodFrame,
        LLMContextFrame,
        ErrorFrame,
    )

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(observe_every_push=False)
        self._timeline = timeline

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if not isinstance(frame, self.WATCHED):
            return
        # Broadcast frames travel both ways as two sibling frames: count the downstream one.
        if data.direction != FrameDirection.DOWNSTREAM and not isinstance(frame, ErrorFrame):
            return
        self._timeline.on_frame(frame, data.timestamp / 1e9)
