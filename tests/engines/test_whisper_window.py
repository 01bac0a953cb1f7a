"""Whisper on a short encoder window: real Whisper base, real espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from faster_whisper import WhisperModel

from pipecatapp.embedded import models
from pipecatapp.services.whisper_window import (
    transcribe_utterance,
    transcribe_window,
    window_for,
)
from tests.transcripts import close_enough

QUESTIONS = (
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?",
)
LONG = (
    "Please tell me a short story about a friendly dragon who lives in a cave by the sea "
    "and reads books all day."
)


@pytest.mark.parametrize(
    ("audio_secs", "minimum", "window"),
    [
        (2.0, 10.0, 10.0),  # a question: the minimum window
        (6.0, 10.0, 12.0),  # at least twice the speech
        (5.2, 10.0, 11.0),  # whole seconds, rounded up
        (15.0, 10.0, None),  # twice the speech reaches 30 s: the full window
        (1.0, 30.0, None),  # window_secs 30 turns the short window off
    ],
)
def test_the_window_is_at_least_twice_the_speech(audio_secs, minimum, window):
    assert window_for(audio_secs, minimum) == window


@pytest.fixture(scope="module")
def whisper() -> WhisperModel:
    return WhisperModel(str(models.whisper_base_dir()), device="cpu", compute_type="int8",
                        cpu_threads=2, local_files_only=True)


def _samples(path) -> np.ndarray:
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000
    return audio


@pytest.mark.slow
@pytest.mark.parametrize("text", QUESTIONS)
def test_a_question_is_heard_on_the_short_window(whisper, espeak_wav, tmp_path, text):
    result = transcribe_window(whisper, _samples(espeak_wav(text, tmp_path / "q.wav")),
                               window_secs=10.0, beam_size=1, language="en")
    assert result is not None, "a 2-3 s question must fit a 10 s window"
    assert close_enough(result.text, text), result
    assert result.no_speech_prob < 0.4, result
    assert result.window == 10.0, result


@pytest.mark.slow
def test_speech_too_long_for_a_short_window_falls_back_to_the_full_one(
        whisper, espeak_wav, tmp_path):
    one = _samples(espeak_wav(LONG, tmp_path / "long.wav"))
    samples = np.concatenate([one, one])  # about 15 s: twice that is Whisper's whole window
    assert transcribe_window(whisper, samples, window_secs=10.0, beam_size=1,
                             language="en") is None
    result = transcribe_utterance(whisper, samples, window_secs=10.0, beam_size=1,
                                  language="en", no_speech_threshold=0.4)
    assert result.window is None, "a 15 s utterance went through a short window"
    heard = result.text
    # Both halves heard, at most four words off in each (the full window hears the end of
    # this sentence as "reads book solve" here).
    assert heard.lower().count("friendly dragon") == 2, heard
    assert close_enough(heard, f"{LONG} {LONG}", max_errors=8), heard


@pytest.mark.slow
def test_silence_gives_no_text(whisper):
    quiet = np.random.default_rng(1).normal(0.0, 0.0005, 32000).astype(np.float32)
    assert transcribe_utterance(whisper, quiet, window_secs=10.0, beam_size=1, language="en",
                                no_speech_threshold=0.4).text == ""
