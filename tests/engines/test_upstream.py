"""What pipecatapp/upstream.py relies on in faster-whisper, checked against the installed one.

These fail on an upgrade that changes it: the versions it was verified with, the members
and signatures it calls, and the result (a decode on the full 30 s window must be what
faster-whisper's own ``transcribe`` gives for the same audio and options).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import ctranslate2
import numpy as np
import pytest
import soundfile as sf
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from pipecatapp import upstream
from pipecatapp.embedded import models

QUESTION = "What is the weather like in London today?"


@pytest.mark.parametrize("package", sorted(upstream.VERIFIED_VERSIONS))
def test_upstream_was_verified_against_the_installed_version(package):
    assert version(package) == upstream.VERIFIED_VERSIONS[package], (
        f"{package} {version(package)} is installed; pipecatapp/upstream.py was verified "
        f"against {upstream.VERIFIED_VERSIONS[package]}. Run tests/engines/test_upstream.py "
        "with the new version, then update VERIFIED_VERSIONS."
    )


def _parameters(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_the_faster_whisper_members_it_calls_keep_their_signatures():
    assert _parameters(WhisperModel.get_prompt)[:6] == [
        "self", "tokenizer", "previous_tokens", "without_timestamps", "prefix", "hotwords"]
    assert _parameters(WhisperModel.encode) == ["self", "features"]
    assert _parameters(Tokenizer.__init__)[:5] == [
        "self", "tokenizer", "multilingual", "task", "language"]
    assert _parameters(get_suppressed_tokens) == ["tokenizer", "suppress_tokens"]
    assert hasattr(ctranslate2.models.Whisper, "generate")


@pytest.fixture(scope="module")
def whisper() -> WhisperModel:
    return WhisperModel(str(models.whisper_base_dir()), device="cpu", compute_type="int8",
                        cpu_threads=2, local_files_only=True)


def test_the_model_members_it_reads_are_what_it_expects(whisper):
    assert isinstance(whisper.model, ctranslate2.models.Whisper)
    features = whisper.feature_extractor(np.zeros(16000, dtype=np.float32))
    assert features.shape[0] == whisper.model.n_mels
    assert 100 <= features.shape[1] <= 102, "no longer 100 log-Mel frames a second"
    assert callable(getattr(whisper.hf_tokenizer, "encode", None))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("beam_size", "hotwords", "initial_prompt"),
    [(1, None, None), (5, "London", "A question about the weather.")],
)
def test_a_full_window_decode_is_what_transcribe_gives(whisper, espeak_wav, tmp_path,
                                                       beam_size, hotwords, initial_prompt):
    samples, rate = sf.read(str(espeak_wav(QUESTION, tmp_path / "q.wav")), dtype="float32")
    assert rate == 16000
    ours = upstream.decode_on_window(
        whisper, samples, frames=upstream.FULL_WINDOW_FRAMES, beam_size=beam_size,
        language="en", max_new_tokens=40, hotwords=hotwords, initial_prompt=initial_prompt,
    )
    segments, _ = whisper.transcribe(
        samples, beam_size=beam_size, best_of=1, temperature=[0.0], language="en",
        condition_on_previous_text=False, without_timestamps=True, max_new_tokens=40,
        hotwords=hotwords, initial_prompt=initial_prompt,
    )
    (theirs,) = list(segments)
    print(f"beam {beam_size}: ours [{ours.text}] {ours.avg_logprob:.4f} "
          f"{ours.no_speech_prob:.4f}; transcribe [{theirs.text.strip()}] "
          f"{theirs.avg_logprob:.4f} {theirs.no_speech_prob:.4f}")
    assert ours.text == theirs.text.strip()
    assert ours.tokens == list(theirs.tokens)
    # The same features and the same generate call: the same scores, not merely close ones
    # (a frame more at the end once moved avg_logprob by 0.04 on some inputs).
    assert ours.avg_logprob == pytest.approx(theirs.avg_logprob, abs=1e-5)
    assert ours.no_speech_prob == pytest.approx(theirs.no_speech_prob, abs=1e-5)
