"""Odd audio: telephone-band (8 kHz) and clipped speech, before and after conditioning; and
what Whisper's temperature fallback costs on speech it cannot understand, with and without
the app's bound (``stt.max_secs``).

The utterances are the voice suite's questions, spoken by espeak-ng in two voices and turned
into the odd versions with sox, as a user's recordings would be: ``sinc 300-3400 rate 8000``
(telephone band), ``gain 20`` (clipped), and both. Each is read back by the app's reader
(resampled to 16 kHz) and decoded by the app's bounded Whisper (base, greedy, 2 threads);
a transcript counts only if the app would pass it on (understood), so a not-understood
utterance costs all its words. The fallback part times reversed utterances (speech to the
VAD, no words to Whisper) through faster-whisper's own transcribe (temperature retries up
to 1.0) and through the app's bounded decode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import Table, fmt, median
from devtools.utterances import espeak_wav, sox, word_errors
from pipecatapp.embedded import models
from pipecatapp.transports.wavio import read_audio

VOICES = ("en-us+m3", "en-us+f3")
VARIANTS: dict[str, list[str]] = {
    "clean": [],
    "8 kHz telephone band": ["sinc", "300-3400", "rate", "8000"],
    "clipped (+20 dB)": ["gain", "20"],
    "8 kHz and clipped": ["sinc", "300-3400", "rate", "8000", "gain", "20"],
}
BOUNDS = (0.6, 1.5)


@dataclass
class OddAudio:
    words: int = 0
    errors: dict[tuple[str, bool], int] = field(default_factory=dict)
    not_understood: dict[tuple[str, bool], int] = field(default_factory=dict)
    utterances: int = 0
    fallback: dict[str, list[float]] = field(default_factory=dict)
    attempts: dict[str, list[int]] = field(default_factory=dict)
    reversed_count: int = 0
    voices: tuple[str, ...] = VOICES


def _sox(source: Path, dest: Path, effects: list[str]) -> Path:
    sox(str(source), str(dest), *effects)
    return dest


def run(work: Path, *, smoke: bool, progress: Callable[[str], None]) -> OddAudio:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    from bench.voice import QUESTIONS
    from pipecatapp.services.bounded_whisper import judge, transcribe_bounded, transcribe_readings
    from pipecatapp.services.conditioning import readings

    work.mkdir(parents=True, exist_ok=True)
    model = WhisperModel(str(models.whisper_base_dir(progress=None)), device="cpu",
                         compute_type="int8", cpu_threads=2, local_files_only=True)
    texts = QUESTIONS[:3] if smoke else QUESTIONS
    voices = VOICES[:1] if smoke else VOICES
    result = OddAudio(voices=voices)
    progress(f"odd audio: {len(texts)} questions x {len(voices)} voices x {len(VARIANTS)} "
             "variants, raw and conditioned")
    for v, voice in enumerate(voices):
        for i, text in enumerate(texts):
            clean = espeak_wav(text, work / f"odd-{v}-{i}.wav", voice=voice)
            result.words += len(text.split())
            result.utterances += 1
            for n, (name, effects) in enumerate(VARIANTS.items()):
                path = _sox(clean, work / f"odd-{v}-{i}-{n}.wav", effects) if effects else clean
                samples = read_audio(path, 16000).samples.astype(np.float32) / 32768.0
                for conditioned in (False, True):
                    versions = readings(samples) if conditioned else [samples]
                    decoded = transcribe_readings(model, versions, max_secs=BOUNDS[0],
                                                  window_secs=10.0, beam_size=1, language="en")
                    verdict = judge(decoded, samples)
                    heard = verdict.text if verdict.understood else ""
                    key = (name, conditioned)
                    result.errors[key] = result.errors.get(key, 0) + word_errors(heard, text)
                    result.not_understood[key] = (result.not_understood.get(key, 0)
                                                  + (not verdict.understood))
    progress("odd audio: Whisper's fallback on reversed speech, unbounded and bounded")
    for v, voice in enumerate(voices):
        for i, text in enumerate(texts):
            forward = work / f"odd-{v}-{i}.wav"
            if not forward.exists():
                forward = espeak_wav(text, forward, voice=voice)
            backward = _sox(forward, work / f"rev-{v}-{i}.wav", ["reverse"])
            samples = read_audio(backward, 16000).samples.astype(np.float32) / 32768.0
            result.reversed_count += 1
            start = time.perf_counter()
            segments, _ = model.transcribe(samples, beam_size=1, language="en",
                                           condition_on_previous_text=False)
            list(segments)
            result.fallback.setdefault("faster-whisper as shipped", []).append(
                time.perf_counter() - start)
            for bound in BOUNDS:
                decoded = transcribe_bounded(model, samples, max_secs=bound, window_secs=10.0,
                                             beam_size=1, language="en")
                name = f"app, stt.max_secs={bound:g}"
                result.fallback.setdefault(name, []).append(decoded.secs)
                result.attempts.setdefault(name, []).append(decoded.attempts)
    return result


def tables(r: OddAudio) -> list[Table]:
    words = Table("Odd audio: word errors before and after conditioning (Whisper base, greedy)",
                  ["audio", "word errors raw", "conditioned", "not understood raw",
                   "conditioned"])
    for name in VARIANTS:
        words.add(name, f"{r.errors[(name, False)]}/{r.words}",
                  f"{r.errors[(name, True)]}/{r.words}",
                  f"{r.not_understood[(name, False)]}/{r.utterances}",
                  f"{r.not_understood[(name, True)]}/{r.utterances}")
    words.notes.append(f"{r.utterances} questions in espeak-ng {', '.join(r.voices)}, made "
                       "odd with sox; a transcript the app would not pass on counts all its "
                       "words as errors; conditioning: services/conditioning.py (clipped speech: "
                       "the clipped and the de-clipped reading, the more confident kept)")
    fallback = Table("Whisper's temperature fallback on speech it cannot understand",
                     ["decoder", "median s", "max s", "decodes (median)"])
    for name, secs in r.fallback.items():
        attempts = r.attempts.get(name)
        fallback.add(name, fmt(median(secs), 2), fmt(max(secs), 2),
                     f"{median([float(a) for a in attempts]):g}" if attempts else "up to 6")
    fallback.notes.append(f"{r.reversed_count} reversed questions; the app's decode starts a "
                          "retry only if it fits in stt.max_secs, then judges the utterance "
                          "not understood")
    return [words, fallback]
