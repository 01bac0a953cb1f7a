"""Whisper with a time bound per utterance, and a verdict on what it heard.

faster-whisper retries a decode that looks unreliable at rising temperatures (0.2, 0.4, ...
1.0), and every retry costs a whole decode: a reversed question took 2.6-5.9 s here instead
of 0.5 s, and the text it finally gave was nonsense. ``transcribe_bounded`` runs the same
ladder one rung at a time: the short encoder window first (see whisper_window), then the full
window at temperature 0, 0.2, ...; it starts a rung only if its cost (estimated from the
rungs before it) still fits in ``max_secs`` from the start. A decode it had to stop short is
``cut``. The first pass always runs, so a confident transcript is never lost to the bound.

``judge`` turns the result into what the app does with it: ``understood`` (the text goes to
the LLM), ``low_confidence`` or ``no_transcript`` (the bot says it did not catch that), or
``noise`` (nothing is said).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from faster_whisper import WhisperModel

from pipecatapp.services.loudness import window_rms
from pipecatapp.services.whisper_window import (
    FULL_WINDOW_SECS,
    compression_ratio,
    decode_window,
    without_repeats,
)

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MIN_AVG_LOGPROB = -1.0  # faster-whisper's log_prob_threshold
MAX_COMPRESSION_RATIO = 2.4  # faster-whisper's compression_ratio_threshold (repetitions)
NO_SPEECH_PROB = 0.6  # faster-whisper's no_speech_threshold
FULL_COST_MARGIN = 2.5  # the first full-window pass costs more than the encoder ratio says
MIN_SPEECH_SECS = 0.3  # shorter voiced audio with no text is a blip, not speech
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Decoded:
    """The best decode of one utterance within the bound, with its scores."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    window: float | None  # None: the full 30 s window
    attempts: int
    secs: float
    cut: bool  # a further retry would have run past the bound and was not started
    temperature: float = 0.0

    def confident(self, min_avg_logprob: float = MIN_AVG_LOGPROB) -> bool:
        return bool(self.text) and (
            self.avg_logprob >= min_avg_logprob
            and self.compression_ratio <= MAX_COMPRESSION_RATIO
        )


def _decode_full(model: WhisperModel, samples: np.ndarray, *, temperature: float,
                 beam_size: int, language: str | None, hotwords: str | None,
                 initial_prompt: str | None) -> Decoded:
    """One pass of faster-whisper's full-window transcribe at one temperature (no retries)."""
    # As many tokens as the speech can hold (a runaway decode is the slow case), one
    # sample per temperature (faster-whisper samples best_of=5 candidates by default).
    max_new = 8 + int(len(samples) / SAMPLE_RATE * 7.0 + 0.999)
    segments, _ = model.transcribe(
        samples,
        beam_size=beam_size,
        best_of=1,
        max_new_tokens=max_new,
        temperature=[temperature],
        language=language,
        hotwords=hotwords,
        initial_prompt=initial_prompt,
        condition_on_previous_text=False,
        without_timestamps=True,
    )
    parts = list(segments)
    text = " ".join(p.text.strip() for p in parts).strip()
    if not parts:
        return Decoded("", 0.0, 1.0, 0.0, None, 1, 0.0, False, temperature)
    weights = [max(1, len(p.tokens)) for p in parts]
    avg = sum(p.avg_logprob * w for p, w in zip(parts, weights, strict=True)) / sum(weights)
    return Decoded(
        text=without_repeats(text),
        avg_logprob=float(avg),
        no_speech_prob=float(max(p.no_speech_prob for p in parts)),
        compression_ratio=compression_ratio(text),  # of the loop, if it looped
        window=None,
        attempts=1,
        secs=0.0,
        cut=False,
        temperature=temperature,
    )


def transcribe_bounded(
    model: WhisperModel,
    samples: np.ndarray,
    *,
    max_secs: float,
    window_secs: float,
    beam_size: int,
    language: str | None,
    hotwords: str | None = None,
    initial_prompt: str | None = None,
    min_avg_logprob: float = MIN_AVG_LOGPROB,
    temperatures: Sequence[float] = TEMPERATURES,
    clock: Callable[[], float] = time.perf_counter,
    stopped: Callable[[], bool] = lambda: False,
) -> Decoded:
    """Decode ``samples`` (float32 mono 16 kHz), retrying while unreliable and while the next
    retry fits in ``max_secs``; returns the first confident decode, else the best one. Once
    ``stopped()`` is true no further retry starts (the result is cut)."""
    started = clock()
    attempts = 0
    best: Decoded | None = None
    last_cost = 0.0
    full_cost: float | None = None

    def done(d: Decoded, cut: bool) -> Decoded:
        return replace(d, attempts=attempts, secs=clock() - started, cut=cut)

    def better(d: Decoded) -> Decoded:
        if best is None or (d.text and (not best.text or d.avg_logprob > best.avg_logprob)):
            return d
        return best

    if window_secs < FULL_WINDOW_SECS:
        t0 = clock()
        short = decode_window(model, samples, window_secs=window_secs, beam_size=beam_size,
                              language=language, hotwords=hotwords,
                              initial_prompt=initial_prompt)
        if short is not None:
            attempts += 1
            last_cost = clock() - t0
            decoded = Decoded(short.text, short.avg_logprob, short.no_speech_prob,
                              short.compression_ratio, short.window, 1, 0.0, False)
            if not short.suspect and (decoded.confident(min_avg_logprob) or not short.text):
                return done(decoded, False)
            best = decoded
            # The full window's encoder reads 30 s instead of the short window's seconds, and
            # its decoder attends to all of them: measured 5-7x the short pass here (busy).
            full_cost = last_cost * FULL_WINDOW_SECS / short.window * FULL_COST_MARGIN
    for temperature in temperatures:
        if attempts:
            estimate = full_cost if full_cost is not None else last_cost
            if stopped() or clock() - started + estimate > max_secs:
                assert best is not None
                return done(best, True)
        t0 = clock()
        decoded = _decode_full(model, samples, temperature=temperature, beam_size=beam_size,
                               language=language, hotwords=hotwords,
                               initial_prompt=initial_prompt)
        attempts += 1
        full_cost = last_cost = clock() - t0
        if decoded.confident(min_avg_logprob):
            return done(decoded, False)
        best = better(decoded)
    assert best is not None
    return done(best, False)


@dataclass(frozen=True)
class Verdict:
    """What to do with an utterance: ``understood``, ``low_confidence``, ``no_transcript``
    (say it was not caught) or ``noise`` (say nothing)."""

    kind: str
    text: str

    @property
    def understood(self) -> bool:
        return self.kind == "understood"


def voiced_secs(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds of ``samples`` (float32) louder than a fixed floor, in 20 ms frames."""
    hop = sample_rate // 50
    return float(np.count_nonzero(window_rms(samples, hop) > 0.01)) * hop / sample_rate


def judge(decoded: Decoded, samples: np.ndarray, *,
          min_avg_logprob: float = MIN_AVG_LOGPROB) -> Verdict:
    """The app's verdict on a decoded utterance (``samples`` float32 at 16 kHz).

    The VAD lets only speech-like sound through (Silero ignored white noise, a cough-like
    burst, a tone and a hum here); of that, unsure text that Whisper judges to be no speech
    (its own silence rule) and an utterance with no text and less than ``MIN_SPEECH_SECS`` of
    voiced audio are noise; anything else that is not confident was speech not caught.
    """
    if decoded.confident(min_avg_logprob):
        return Verdict("understood", decoded.text)
    if decoded.no_speech_prob >= NO_SPEECH_PROB:
        # Whisper's own silence rule: unsure text where it thinks nobody spoke ("you")
        return Verdict("noise", "")
    if decoded.text:
        return Verdict("low_confidence", decoded.text)
    if voiced_secs(samples) < MIN_SPEECH_SECS:
        return Verdict("noise", "")
    return Verdict("no_transcript", "")


def transcribe_readings(
    model: WhisperModel,
    readings: Sequence[np.ndarray],
    *,
    max_secs: float,
    clock: Callable[[], float] = time.perf_counter,
    stopped: Callable[[], bool] = lambda: False,
    **options: Any,
) -> Decoded:
    """Decode each reading of one utterance (services/conditioning.py, ``readings``) within
    one bound and keep the best: a confident decode over an unsure one, then the higher
    ``avg_logprob``. A further reading starts only if the time left in ``max_secs`` covers
    what the first one cost; the first always runs. ``options``: ``transcribe_bounded``'s."""
    started = clock()
    best: Decoded | None = None
    first_cost = 0.0
    attempts = 0
    min_avg_logprob = options.get("min_avg_logprob", MIN_AVG_LOGPROB)
    for i, samples in enumerate(readings):
        left = max_secs - (clock() - started)
        if i and (left < first_cost or stopped()):
            break
        decoded = transcribe_bounded(model, samples, max_secs=max(0.0, left), clock=clock,
                                     stopped=stopped, **options)
        attempts += decoded.attempts
        if i == 0:
            first_cost = decoded.secs
        if best is None or _rank(decoded, min_avg_logprob) > _rank(best, min_avg_logprob):
            best = decoded
    assert best is not None, "no reading to decode"
    return replace(best, attempts=attempts, secs=clock() - started)


def _rank(d: Decoded, min_avg_logprob: float) -> tuple[bool, bool, float]:
    return d.confident(min_avg_logprob), bool(d.text), d.avg_logprob
