"""WhisperSTT: real Whisper base, real espeak-ng speech, pipecat's Silero VAD in front."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import TranscriptionFrame, UserStoppedSpeakingFrame

from pipecatapp.embedded import models
from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.stt_whisper import WhisperSTT
from tests.transcripts import close_enough

from .audio_pipeline import read_pcm16, stream_through

QUESTION = "What is the weather like in London today?"


@pytest.mark.slow
@pytest.mark.parametrize("beam_size", [1, 5])
async def test_whisper_transcribes_an_utterance(espeak_wav, tmp_path, beam_size):
    wav = espeak_wav(QUESTION, tmp_path / "question.wav")
    stt = WhisperSTT(
        model=str(models.whisper_base_dir()), beam_size=beam_size, cpu_threads=2, language="en"
    )
    assert stt.beam_size == beam_size and stt.cpu_threads == 2

    pcm, rate = read_pcm16(wav)
    received = await stream_through(stt, pcm, rate)

    assert len(received.finals) == 1, received.finals
    assert close_enough(received.finals[0], QUESTION), received.finals
    (latency,) = received.final_latencies()
    print(
        f"whisper base beam={beam_size}: load {stt.load_secs:.2f}s, warm-up "
        f"{stt.warm_up_secs:.2f}s, VAD stop -> transcript {latency:.2f}s"
    )
    assert latency < 10, "a 3 s utterance took more than 10 s to transcribe"


def test_whisper_refuses_a_missing_model_directory(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"stt\.model.*no model\.bin"):
        WhisperSTT(model=str(tmp_path / "nowhere"), beam_size=1, cpu_threads=1, language="en")


@pytest.mark.parametrize(
    ("setting", "kwargs"),
    [
        ("stt.beam_size", {"beam_size": 0}),
        ("stt.cpu_threads", {"cpu_threads": -1}),
        ("stt.language", {"language": "english"}),
        ("stt.window_secs", {"window_secs": 5.0}),
        ("stt.window_secs", {"window_secs": 31.0}),
    ],
)
def test_whisper_names_the_bad_setting(setting, kwargs):
    args = {"model": "base", "beam_size": 1, "cpu_threads": 1, "language": "en"} | kwargs
    with pytest.raises(ConfigError) as error:
        WhisperSTT(**args)
    assert error.value.setting == setting


@pytest.mark.slow
async def test_whisper_ends_the_user_turn_in_the_apps_arrangement(espeak_wav, tmp_path):
    """VAD in the user aggregator (frames come back upstream); the transcript ends the turn."""
    pcm, rate = read_pcm16(espeak_wav(QUESTION, tmp_path / "question.wav"))
    stt = WhisperSTT(
        model=str(models.whisper_base_dir()), beam_size=1, cpu_threads=2, language="en"
    )

    received = await stream_through(stt, pcm, rate, vad_in_aggregator=True)

    assert len(received.finals) == 1, received.finals
    assert close_enough(received.finals[0], QUESTION), received.finals
    ((final_at, _),) = received.of(TranscriptionFrame)
    ((turn_end_at, _),) = received.of(UserStoppedSpeakingFrame)
    assert 0 <= turn_end_at - final_at < 0.25, "the turn did not end when the transcript came"
    print(f"whisper: VAD stop -> turn end {received.turn_end_latencies()[0]:.2f}s")
