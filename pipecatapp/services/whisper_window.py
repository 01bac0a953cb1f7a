"""Whisper on a short encoder window: one utterance transcribed in a fraction of the time.

Whisper's encoder always reads a 30 s window (faster-whisper pads every clip's log-Mel
features to 3,000 frames), so a 2 s question costs as much as 30 s of speech: 0.50 s for
Whisper base int8 on two cores here. CTranslate2's encoder accepts a shorter window, and the
decoder's cross-attention simply sees fewer frames: with a 15 s window the same questions
take 0.20 s with the same text (the trick whisper.cpp exposes as ``audio_ctx``).

The window must stay well longer than the speech in it: a window that the speech nearly fills
makes Whisper repeat itself or garble words (seen here at 6 s for a 5 s sentence). So the
window is at least twice the utterance (``window_secs`` is only its minimum), the tokens a
pass may produce are bounded by the utterance's length, and a result that looks like a
hallucination is thrown away for faster-whisper's full 30 s ``transcribe``. Measured on 60
espeak-ng questions in three voices (README, Tuning): 10 s window 0.15 s median and 56 word
errors, full window 0.45 s and 66 word errors.

The quiet audio before the speech counts toward the window too: pipecat hands the STT a
segment that starts with up to a second of what preceded the VAD's start, so a short window
first drops all but ``LEAD_KEEP_SECS`` of it (``trim_lead``). On the voice panel's 84
questions, cut as the app cuts them, that took the median window from 10 to 9 s and Whisper
from 0.18 to 0.145 s, with 131 word errors instead of 138 (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np
from faster_whisper import WhisperModel

from pipecatapp.services.loudness import onset, window_rms
from pipecatapp.upstream import decode_on_window

FULL_WINDOW_SECS = 30.0
FRAMES_PER_SEC = 100  # log-Mel frames (10 ms hop)
# Speech is at most about 4 words, 6 tokens, a second; the rest is punctuation and headroom.
_TOKENS_PER_SEC = 7.0
_TOKENS_HEADROOM = 8
# faster-whisper's own thresholds for a decode that needs a second try.
_MAX_COMPRESSION_RATIO = 2.4
_MIN_AVG_LOGPROB = -1.0
# Quiet audio kept before the speech: a soft onset ("h", "f") stays in, and the segment's
# lead from before the VAD's start (up to a second) goes.
LEAD_KEEP_SECS = 0.3
# Where the speech starts: the first 10 ms louder than this, relative to the loudest 10 ms.
ONSET_DB = -35.0


def compression_ratio(text: str) -> float:
    """How much zlib shrinks ``text`` (UTF-8): Whisper's measure of a repeating decode."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


_SENTENCE = re.compile(r"[^.?!]+[.?!]*")


def _words(text: str) -> str:
    return " ".join(re.findall(r"[\w']+", text.lower()))


def without_repeats(text: str) -> str:
    """``text`` without Whisper's repetition loop, kept once.

    A loop is a sentence that follows itself and then starts again and is cut off by the
    token bound ("Tell me about the ocean. Tell me about the ocean. Tell me"). Only that
    shape is cut back: a sentence said twice and finished both times ("Stop! Stop!", or a
    long request read out twice) is what the user said, and stays.

    Whisper base falls into this loop on some cuts of a clean utterance (5 to 9 of 20 cuts
    of one espeak question here), and the short window's token bound lets up to about 2.5
    copies through; the text before the loop is what was said.
    """
    parts = [p.strip() for p in _SENTENCE.findall(text) if _words(p)]
    if len(parts) < 3 or parts[-1].endswith((".", "?", "!")):
        return text
    repeated = [i for i in range(1, len(parts) - 1)
                if _words(parts[i]) == _words(parts[i - 1])]
    if not repeated or not _words(parts[repeated[-1]]).startswith(_words(parts[-1])):
        return text
    kept = [part for i, part in enumerate(parts[:-1]) if i not in repeated]
    return " ".join(kept)


def trim_lead(samples: np.ndarray, *, keep_secs: float = LEAD_KEEP_SECS,
              sample_rate: int = 16000) -> np.ndarray:
    """``samples`` without the quiet audio before the speech, but for its last ``keep_secs``.

    The speech starts at the first 10 ms frame within ``ONSET_DB`` of the loudest one. Where
    the lead is not quiet (room noise at that level), nothing is cut.
    """
    hop = sample_rate // 100
    rms = window_rms(samples, hop)
    first = onset(rms, float(rms.max()) * 10.0 ** (ONSET_DB / 20.0)) if rms.size else None
    if first is None:  # no sound, or less than 10 ms of audio
        return samples
    return samples[max(0, first * hop - int(keep_secs * sample_rate)):]


@dataclass(frozen=True)
class Heard:
    """An utterance's text and the encoder window that produced it (None: the full 30 s)."""

    text: str
    window: float | None


def window_for(audio_secs: float, window_secs: float) -> float | None:
    """The encoder window for an utterance: at least ``window_secs`` and twice the speech,
    in whole seconds; ``None`` where that reaches Whisper's own 30 s (use the full window)."""
    window = float(math.ceil(max(window_secs, 2.0 * audio_secs)))
    return window if window < FULL_WINDOW_SECS else None


@dataclass(frozen=True)
class WindowDecode:
    """One greedy/beam pass on a short window, with the scores that judge it."""

    text: str
    no_speech_prob: float
    window: float
    avg_logprob: float
    compression_ratio: float
    hit_token_bound: bool

    @property
    def suspect(self) -> bool:
        """Whether the decode looks unreliable (a loop, a repetition, low confidence)."""
        return self.hit_token_bound or (bool(self.text) and (
            self.compression_ratio > _MAX_COMPRESSION_RATIO or self.avg_logprob < _MIN_AVG_LOGPROB
        ))


def decode_window(
    model: WhisperModel,
    samples: np.ndarray,
    *,
    window_secs: float,
    beam_size: int,
    language: str | None,
    hotwords: str | None = None,
    initial_prompt: str | None = None,
    sample_rate: int = 16000,
) -> WindowDecode | None:
    """Decode ``samples`` (float32 mono, 16 kHz) once on a short encoder window and return
    the text with its scores; ``None`` when the utterance is too long for a short window.
    The quiet lead is trimmed first (``trim_lead``), so it does not widen the window."""
    samples = trim_lead(samples, sample_rate=sample_rate)
    window = window_for(len(samples) / sample_rate, window_secs)
    if window is None or len(samples) == 0:
        return None
    max_new = _TOKENS_HEADROOM + math.ceil(len(samples) / sample_rate * _TOKENS_PER_SEC)
    decoded = decode_on_window(
        model, samples, frames=int(window * FRAMES_PER_SEC), beam_size=beam_size,
        language=language, max_new_tokens=max_new, hotwords=hotwords,
        initial_prompt=initial_prompt,
    )
    return WindowDecode(
        text=without_repeats(decoded.text),
        no_speech_prob=decoded.no_speech_prob,
        window=window,
        avg_logprob=decoded.avg_logprob,
        compression_ratio=compression_ratio(decoded.text),  # of the loop, if it looped
        hit_token_bound=len(decoded.tokens) >= max_new,
    )


def transcribe_window(
    model: WhisperModel,
    samples: np.ndarray,
    *,
    window_secs: float,
    beam_size: int,
    language: str | None,
    hotwords: str | None = None,
    initial_prompt: str | None = None,
    sample_rate: int = 16000,
) -> WindowDecode | None:
    """Transcribe ``samples`` (float32 mono, 16 kHz) on a short encoder window.

    Returns ``None`` when the utterance is too long for a short window or the decode looks
    unreliable (hit its token bound, repeats itself, low confidence): the caller then runs
    the full-window transcription instead.
    """
    decoded = decode_window(
        model, samples, window_secs=window_secs, beam_size=beam_size, language=language,
        hotwords=hotwords, initial_prompt=initial_prompt, sample_rate=sample_rate,
    )
    if decoded is None or decoded.suspect:
        return None
    return decoded


def transcribe_utterance(
    model: WhisperModel,
    samples: np.ndarray,
    *,
    window_secs: float,
    beam_size: int,
    language: str | None,
    hotwords: str | None = None,
    initial_prompt: str | None = None,
    no_speech_threshold: float | None = None,
) -> Heard:
    """One utterance to text: the short window where it applies, else faster-whisper's full
    ``transcribe``. Text Whisper itself judges to be no speech is dropped."""
    if window_secs < FULL_WINDOW_SECS:
        short = transcribe_window(
            model, samples, window_secs=window_secs, beam_size=beam_size, language=language,
            hotwords=hotwords, initial_prompt=initial_prompt,
        )
        if short is not None:
            if no_speech_threshold is not None and short.no_speech_prob >= no_speech_threshold:
                return Heard("", short.window)
            return Heard(short.text, short.window)
    # transcribe() is lazy: the segments are decoded while they are consumed.
    segments, _ = model.transcribe(
        samples,
        beam_size=beam_size,
        language=language,
        hotwords=hotwords,
        initial_prompt=initial_prompt,
        condition_on_previous_text=False,
    )
    kept = [
        s.text for s in segments
        if no_speech_threshold is None or s.no_speech_prob < no_speech_threshold
    ]
    return Heard(without_repeats(" ".join(t.strip() for t in kept).strip()), None)
