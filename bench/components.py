"""Per-component timings behind the voice suite's stages, with the knobs the README's tuning
section discusses: Whisper beam size and threads, Whisper's encoder window, Piper's time to
first audio and its near-silent lead-in, and Piper with onnxruntime's spinning threads on and
off, alone and while llama-server decodes (as it does while the app speaks). Each figure is a
median over repeats on the test utterances."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.common import Table, fmt, median
from bench.llm import post_json
from devtools.utterances import espeak_wav, word_errors
from pipecatapp.embedded import models
from pipecatapp.transports.wavio import read_audio

if TYPE_CHECKING:
    from piper import PiperVoice

UTTERANCES = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
)
REPLY = "The capital of France is Paris."
# Three espeak-ng voices, so a window is not tuned to one voice's quirks.
WINDOW_VOICES = ("en-us+m7", "en-us+f3", "en+m3")
WINDOWS = (30.0, 20.0, 15.0, 10.0, 8.0)


@dataclass
class WindowRow:
    window: float
    median: float
    errors: int
    exact: int
    total: int
    fallbacks: int


@dataclass
class Components:
    whisper: list[tuple[int, int, float, int, int]]  # beam, threads, median s, right, total
    window: list[WindowRow]
    window_texts: int
    window_voices: tuple[str, ...]
    piper_first: float
    piper_rtf: float
    piper_lead_in: float
    audio_seconds: float
    piper_spin: list[tuple[str, bool, float]]  # beside, spin_wait, median s per sentence


def _whisper(work: Path, repeats: int, progress: Callable[[str], None]
             ) -> list[tuple[int, int, float, int, int]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    wavs = [espeak_wav(text, work / f"component-{i}.wav") for i, text in enumerate(UTTERANCES)]
    rows = []
    for threads in (1, 2):
        model = WhisperModel(str(models.whisper_base_dir(progress=None)), device="cpu",
                             compute_type="int8", cpu_threads=threads, local_files_only=True)
        for beam in (1, 5):
            progress(f"components: Whisper base, beam {beam}, {threads} thread(s)")
            times: list[float] = []
            right = total = 0
            for _ in range(repeats):
                for wav, text in zip(wavs, UTTERANCES, strict=True):
                    start = time.perf_counter()
                    segments, _ = model.transcribe(str(wav), beam_size=beam, language="en",
                                                   condition_on_previous_text=False)
                    heard = " ".join(s.text.strip() for s in segments)
                    times.append(time.perf_counter() - start)
                    total += 1
                    right += word_errors(heard, text) == 0
            rows.append((beam, threads, median(times), right, total))
        del model
    return rows


def _window(work: Path, texts: tuple[str, ...], voices: tuple[str, ...],
            windows: tuple[float, ...], progress: Callable[[str], None]) -> list[WindowRow]:
    """Whisper base, greedy, 2 threads, on each encoder window: time, word errors and how
    many utterances fell back to the full window."""
    from faster_whisper import WhisperModel

    from pipecatapp.services.whisper_window import transcribe_utterance

    model = WhisperModel(str(models.whisper_base_dir(progress=None)), device="cpu",
                         compute_type="int8", cpu_threads=2, local_files_only=True)
    clips = []
    for v, voice in enumerate(voices):
        for i, text in enumerate(texts):
            wav = espeak_wav(text, work / f"window-{v}-{i}.wav", voice=voice)
            audio = read_audio(wav, 16000).samples.astype(np.float32) / 32768.0
            clips.append((text, audio))
    rows = []
    for window in windows:
        progress(f"components: Whisper encoder window {window:g} s, {len(clips)} utterances")
        times, errors, exact, fallbacks = [], 0, 0, 0
        for text, audio in clips:
            start = time.perf_counter()
            heard = transcribe_utterance(model, audio, window_secs=window, beam_size=1,
                                         language="en")
            times.append(time.perf_counter() - start)
            fallbacks += window < 30 and heard.window is None
            wrong = word_errors(heard.text, text)
            errors += wrong
            exact += wrong == 0
        rows.append(WindowRow(window, median(times), errors, exact, len(clips), fallbacks))
    return rows


def _piper(voice: PiperVoice, repeats: int) -> tuple[float, float, float, float]:
    list(voice.synthesize("Hello."))  # warm-up
    firsts, rtfs, leads = [], [], []
    seconds = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        chunks = iter(voice.synthesize(REPLY))
        first = next(chunks)
        firsts.append(time.perf_counter() - start)
        audio = np.concatenate([first.audio_int16_array,
                                *[c.audio_int16_array for c in chunks]])
        total = time.perf_counter() - start
        seconds = len(audio) / first.sample_rate
        rtfs.append(total / seconds)
        loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 0.02 * 32768)
        leads.append((loud[0] if len(loud) else 0) / first.sample_rate)
    return median(firsts), median(rtfs), median(leads), seconds


def _decode_forever(url: str, stop: threading.Event) -> None:
    """Keep llama-server decoding (one long completion after another) until ``stop``."""
    body = {"prompt": "Tell me a long story about a dragon.", "n_predict": 400,
            "ignore_eos": True}
    while not stop.is_set():
        post_json(f"{url}/completion", body, timeout=60)


def _piper_spin(voice: PiperVoice, repeats: int) -> list[tuple[str, bool, float]]:
    """Seconds to synthesize REPLY with onnxruntime's threads spinning or sleeping, on an
    idle machine and while a 1-thread llama-server decodes SmolLM2 on the other core (the
    voice's session is replaced)."""
    from pipecatapp.embedded.server import LlamaServer
    from pipecatapp.services.tts_piper import arena_free_session

    sessions = {spin: arena_free_session(models.piper_voice(), spin_wait=spin)
                for spin in (True, False)}

    def timed(spin: bool) -> float:
        voice.session = sessions[spin]
        list(voice.synthesize("Hello."))  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            list(voice.synthesize(REPLY))
            times.append(time.perf_counter() - start)
        return median(times)

    rows = [("idle machine", spin, timed(spin)) for spin in (True, False)]
    with LlamaServer(models.smollm2_gguf(), threads=1, ctx=4096) as server:
        stop = threading.Event()
        decoder = threading.Thread(target=_decode_forever, args=(server.root_url, stop))
        decoder.start()
        try:
            time.sleep(0.5)
            rows += [("llama-server decoding", spin, timed(spin)) for spin in (True, False)]
        finally:
            stop.set()
            decoder.join()
    return rows


def run(work: Path, *, smoke: bool, progress: Callable[[str], None]) -> Components:
    work.mkdir(parents=True, exist_ok=True)
    repeats = 1 if smoke else 3
    whisper = _whisper(work, repeats, progress)
    from bench.voice import INTERRUPTIONS, LONG_REQUESTS, QUESTIONS

    texts = UTTERANCES if smoke else (*QUESTIONS, *LONG_REQUESTS, *INTERRUPTIONS)
    voices = WINDOW_VOICES[:1] if smoke else WINDOW_VOICES
    window = _window(work, texts, voices, (30.0, 10.0) if smoke else WINDOWS, progress)
    progress("components: Piper joe-medium")
    from piper import PiperVoice

    voice = PiperVoice.load(models.piper_voice())
    first, rtf, lead, seconds = _piper(voice, 2 if smoke else 5)
    progress("components: Piper, spinning threads on and off")
    spin = _piper_spin(voice, 2 if smoke else 9)
    return Components(whisper, window, len(texts), voices, first, rtf, lead, seconds, spin)


def tables(c: Components) -> list[Table]:
    whisper = Table("Components: Whisper base (faster-whisper int8) on a 2-3 s question",
                    ["beam", "cpu threads", "median s", "exact transcripts"])
    for beam, threads, seconds, right, total in c.whisper:
        whisper.add(beam, threads, fmt(seconds, 3), f"{right}/{total}")
    whisper.notes.append("Whisper pads every clip to 30 s, so a short question costs about "
                         "as much as a long one")
    window = Table("Components: Whisper base encoder window (greedy, 2 threads)",
                   ["window s", "median s", "word errors", "exact", "full-window fallbacks"])
    for row in c.window:
        window.add(f"{row.window:g}", fmt(row.median, 3), row.errors,
                   f"{row.exact}/{row.total}", "-" if row.window >= 30 else row.fallbacks)
    window.notes.append(f"{c.window_texts} texts (the voice suite's questions, requests and "
                        f"interruptions) in espeak-ng voices {', '.join(c.window_voices)}; "
                        "30 s is faster-whisper as shipped; a shorter window is at least "
                        "twice the speech (its quiet lead cut to 0.3 s), and a suspect "
                        "decode falls back to 30 s")
    piper = Table("Components: Piper joe-medium", ["metric", "value"])
    piper.add(f"time to first audio, '{REPLY}'", f"{fmt(c.piper_first, 3)} s")
    piper.add("real-time factor", fmt(c.piper_rtf, 3))
    piper.add("near-silent lead-in (below 2 % full scale)", f"{fmt(c.piper_lead_in, 3)} s")
    piper.add("audio length", f"{fmt(c.audio_seconds, 2)} s")
    spin = Table("Components: Piper with onnxruntime's threads spinning or sleeping",
                 ["beside", "threads wait by", "median s per sentence"])
    for beside, spin_wait, seconds in c.piper_spin:
        spin.add(beside, "spinning (default)" if spin_wait else "sleeping (tts.spin_wait off)",
                 fmt(seconds, 3))
    spin.notes.append(f"'{REPLY}' synthesized whole; beside: an idle machine, or a 1-thread "
                      "llama-server decoding SmolLM2 without pause (as while the app speaks)")
    return [whisper, window, piper, spin]
