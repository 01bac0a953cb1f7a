"""Odd audio reaches Whisper in a shape it hears: a question spoken by espeak-ng (a voice
unlike the bot's), made telephone-band (8 kHz) and clipped (+20 dB) with sox, read by the
app's reader and decoded by the app's Whisper STT path (conditioning, bounded decode,
verdict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel

from devtools.utterances import sox
from pipecatapp.embedded import models
from pipecatapp.services.bounded_whisper import judge, transcribe_readings
from pipecatapp.services.conditioning import (
    condition,
    declip,
    is_band_limited,
    is_clipped,
    readings,
)
from pipecatapp.transports.wavio import read_audio

# Each question with its content words, which Whisper base must hear in all three odd
# versions; the bench's odd-audio table (docs/speech.md) has the word errors over 20
# questions. Clipped "capital of France" is the hard one: it was heard as "capital of
# friends" with some of sox's random dithers when only the clipped audio was decoded. (At
# 8 kHz alone it is heard as "capital of friends" after the consonant-band boost: not
# checked here, see the odd-audio table.)
QUESTIONS = {
    "planet": ("What is the largest planet in our solar system?",
               ("largest", "planet", "solar", "system")),
    "france": ("What is the capital of France?", ("capital", "france")),
}


@pytest.fixture(scope="module")
def whisper() -> WhisperModel:
    return WhisperModel(str(models.whisper_base_dir()), device="cpu", compute_type="int8",
                        cpu_threads=2, local_files_only=True)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory, espeak_wav) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("odd")
    return {key: espeak_wav(text, folder / f"{key}.wav", voice="en-us+m3", rate=120)
            for key, (text, _) in QUESTIONS.items()}


@pytest.fixture(scope="module")
def question(spoken) -> Path:
    return spoken["planet"]


def _odd(source: Path, dest: Path, *effects: str) -> np.ndarray:
    sox(str(source), str(dest), *effects)
    return read_audio(dest, 16000).samples.astype(np.float32) / 32768.0


PHONE = ("sinc", "300-3400", "rate", "8000")
CLIP = ("gain", "20")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "name", "effects"),
    [
        ("planet", "8khz", PHONE),
        ("planet", "clipped", CLIP),
        ("planet", "8khz-clipped", PHONE + CLIP),
        ("france", "clipped", CLIP),
        ("france", "8khz-clipped", PHONE + CLIP),
    ],
)
def test_odd_speech_is_heard_with_its_content_words(whisper, spoken, tmp_path, key, name,
                                                    effects):
    samples = _odd(spoken[key], tmp_path / f"{name}.wav", *effects)
    if "clipped" in name:
        assert np.mean(np.abs(samples) > 0.99) > 0.01, "sox did not clip the speech"
    decoded = transcribe_readings(whisper, readings(samples), max_secs=0.6, window_secs=10.0,
                                  beam_size=1, language="en")
    verdict = judge(decoded, samples)
    assert verdict.understood, (verdict, decoded)
    heard = verdict.text.lower()
    assert all(word in heard for word in QUESTIONS[key][1]), heard


def test_only_band_limited_audio_is_changed(question, tmp_path):
    clean = read_audio(question, 16000).samples.astype(np.float32) / 32768.0
    phone = _odd(question, tmp_path / "8k.wav", "sinc", "300-3400", "rate", "8000")
    assert is_band_limited(phone) and not is_band_limited(clean)
    assert condition(clean) is clean
    conditioned = condition(phone)
    assert conditioned.shape == phone.shape and float(np.max(np.abs(conditioned))) <= 0.9
    assert not is_band_limited(np.zeros(16000, dtype=np.float32))


def test_only_clipped_audio_gets_a_declipped_reading(question, tmp_path):
    clean = read_audio(question, 16000).samples.astype(np.float32) / 32768.0
    clipped = _odd(question, tmp_path / "clip.wav", "gain", "20")
    assert is_clipped(clipped) and not is_clipped(clean)
    assert len(readings(clean)) == 1 and len(readings(clipped)) == 2
    redrawn = declip(clipped)
    assert redrawn.shape == clipped.shape and float(np.max(np.abs(redrawn))) <= 0.9 + 1e-6
    # The plateaus are gone: far fewer samples sit at the new peak.
    assert np.mean(np.abs(redrawn) >= 0.99 * np.max(np.abs(redrawn))) < 0.2 * np.mean(
        np.abs(clipped) >= 0.99 * np.max(np.abs(clipped)))


def test_a_stopped_decode_starts_no_retry(whisper, question, tmp_path):
    # Reversed speech: the first pass is unsure, so retries would follow within the bound.
    # An early transcription the user went on after is stopped: none of them starts.
    samples = _odd(question, tmp_path / "reversed.wav", "reverse")
    bounded = transcribe_readings(whisper, readings(samples), max_secs=5.0, window_secs=8.0,
                                  beam_size=1, language="en")
    stopped = transcribe_readings(whisper, readings(samples), max_secs=5.0, window_secs=8.0,
                                  beam_size=1, language="en", stopped=lambda: True)
    assert bounded.attempts >= 2, bounded
    assert stopped.attempts == 1 and stopped.cut, stopped
