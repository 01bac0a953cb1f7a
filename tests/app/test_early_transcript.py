"""Transcribing in the user's pause (pipecatapp/services/early_transcript.py, stt.early_secs).

The bookkeeping on its own; the pause watch on pipecat's real Silero VAD fed real speech; and
the app end to end in file mode, where the transcript must be the early one and be right.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pipecat.audio.vad.vad_analyzer import VADParams

from pipecatapp.config import AppConfig
from pipecatapp.services.early_transcript import (
    EarlyTranscript,
    PauseListener,
    PauseWatchingVAD,
)
from tests.app.voice import RATE, compose, duration, read_pcm, run_app, say, turns

FRAME = RATE // 50  # 20 ms, as the transports deliver audio


def transcriber(calls: list[bytes]):
    async def transcribe(pcm: bytes) -> str:
        calls.append(pcm)
        await asyncio.sleep(0.01)
        return f"{len(pcm)} bytes"
    return transcribe


async def test_a_transcription_of_the_pause_is_used_when_the_segment_begins_with_its_audio():
    early: EarlyTranscript[str] = EarlyTranscript(keep_bytes=8)
    calls: list[bytes] = []
    early.add_audio(b"0123456789")  # before speech only the last keep_bytes stay
    assert bytes(early.audio) == b"23456789"
    assert not early.start(transcriber(calls), asyncio.ensure_future)  # nobody speaks yet
    early.speech_started()
    early.add_audio(b"abc")
    assert early.start(transcriber(calls), asyncio.ensure_future)
    assert not early.start(transcriber(calls), asyncio.ensure_future)  # one at a time
    early.add_audio(b"   ")  # the rest of the pause
    assert await early.take(b"23456789abc   " + b"\0" * 4) == "11 bytes"
    assert calls == [b"23456789abc"] and (early.used, early.discarded) == (1, 0)
    assert await early.take(b"anything") is None  # nothing left to take


async def test_it_is_discarded_when_the_user_goes_on_or_the_segment_is_other_audio():
    early: EarlyTranscript[str] = EarlyTranscript(keep_bytes=8)
    calls: list[bytes] = []
    early.speech_started()
    early.add_audio(b"what is")
    early.start(transcriber(calls), asyncio.ensure_future)
    early.resumed()  # the user went on after the pause
    early.add_audio(b" the time")
    assert await early.take(b"what is the time") is None
    early.start(transcriber(calls), asyncio.ensure_future)
    assert await early.take(b"other audio") is None
    assert (early.used, early.discarded) == (0, 2) and len(calls) == 2


class Listener:
    def __init__(self) -> None:
        self.heard: list[tuple[str, float]] = []
        self.at = 0.0

    def user_paused(self) -> None:
        self.heard.append(("paused", round(self.at, 2)))

    def user_resumed(self) -> None:
        self.heard.append(("resumed", round(self.at, 2)))


async def watch(pcm: np.ndarray, pause_secs: float) -> tuple[list[tuple[str, float]], list[float]]:
    """Feed 20 ms frames to a PauseWatchingVAD; what it told, and when speech stopped."""
    from pipecat.audio.vad.vad_analyzer import VADState

    vad = PauseWatchingVAD(pause_secs=pause_secs,
                           params=VADParams(confidence=0.5, start_secs=0.064, stop_secs=0.2,
                                            min_volume=0.2))  # the app's (tuned)
    vad.set_sample_rate(RATE)  # as the pipeline does when it starts
    listener = Listener()
    vad.listener = listener
    stops, state = [], VADState.QUIET
    for i in range(0, pcm.size - FRAME + 1, FRAME):
        listener.at = (i + FRAME) / RATE
        new = await vad.analyze_audio(pcm[i:i + FRAME].tobytes())
        if new == VADState.QUIET and state != VADState.QUIET:
            stops.append(round(listener.at, 2))
        state = new
    return listener.heard, stops


async def test_silero_pauses_are_told_before_the_stop_and_a_resumption_after(tmp_path,
                                                                              espeak_wav):
    what = say(espeak_wav, tmp_path, "What is the capital of France?", "what")
    speech, _ = read_pcm(what)
    loud = np.flatnonzero(np.abs(speech) > 300)
    speech = speech[loud[0]:loud[-1] + 1]  # without espeak's own silence at either end
    gap = np.zeros(int(0.12 * RATE), dtype=np.int16)  # a pause shorter than the VAD's stop
    tail = np.zeros(RATE, dtype=np.int16)
    pause_secs = AppConfig().stt.early_secs  # the tuned profile's
    heard, stops = await watch(np.concatenate([tail, speech, tail]), pause_secs)
    pauses = [t for kind, t in heard if kind == "paused"]
    speech_end = (tail.size + speech.size) / RATE
    # Told on Silero's first quiet window, a good 0.1 s before the VAD's stop.
    assert stops and pauses and pauses[-1] < stops[-1] - 0.1, (heard, stops)
    assert pauses[-1] - speech_end < 0.15, (heard, stops, speech_end)
    heard, stops = await watch(np.concatenate([tail, speech, gap, speech, tail]), pause_secs)
    assert ("resumed" in [kind for kind, _ in heard]) and len(stops) == 1, (heard, stops)
    heard, _ = await watch(np.concatenate([tail, speech, tail]), 0.3)  # past the stop
    assert heard == []


@pytest.mark.slow
def test_the_app_answers_from_the_transcript_of_the_pause(tmp_path, smollm2_server,
                                                          espeak_wav):
    questions = [say(espeak_wav, tmp_path, text, f"q{n}") for n, text in enumerate(
        ["What is the capital of France?", "How many days are in a week?"])]
    wav = compose(tmp_path / "in.wav", [(0.5, questions[0]), (9.0, questions[1])],
                  total=9.0 + duration(questions[1]) + 8.0)
    timeline = tmp_path / "timeline.jsonl"
    proc = run_app("-t", "file", "--input", str(wav), "--output", str(tmp_path / "out.wav"),
                   "--timeline", str(timeline), "--llm-url", smollm2_server.base_url,
                   "--set", "llm.temperature=0", "--log-level", "INFO")
    assert proc.returncode == 0, proc.stderr[-4000:]
    heard = [t["text"].lower() for t in turns(timeline) if t["text"]]
    assert len(heard) == 2 and "france" in heard[0] and "week" in heard[1], heard
    assert "early transcript used (2 used" in proc.stderr, proc.stderr[-4000:]


def test_tuned_transcribes_in_the_pause_and_stock_only_at_the_stop() -> None:
    from pipecat.services.whisper.stt import WhisperSTTService

    from pipecatapp.config import load_config
    from pipecatapp.services.stt_whisper import WhisperSTT

    assert load_config(environ={}, overrides={}).stt.early_secs == 0.02
    assert load_config(environ={}, overrides={"profile": "stock"}).stt.early_secs == 0
    # The bot tells only an STT that listens; stock's is pipecat's own, which does not.
    assert issubclass(WhisperSTT, PauseListener)
    assert not issubclass(WhisperSTTService, PauseListener)
