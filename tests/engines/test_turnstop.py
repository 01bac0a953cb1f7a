"""Ending the user's turn on a finished sentence: real VAD, real Whisper, real espeak-ng speech,
through pipecat's user aggregator as the app arranges it."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import TranscriptionFrame, UserStoppedSpeakingFrame

from pipecatapp.embedded import models
from pipecatapp.services.stt_whisper import WhisperSTT
from pipecatapp.turnstop import is_finished_sentence, sentence_end_stop_strategies

from .audio_pipeline import read_pcm16, stream_through

# Long enough that a turn ended by the timeout cannot be mistaken for one ended at once.
TIMEOUT = 1.5


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("What is the capital of France?", True),
        ("Tell me a story.", True),
        ('He said "go home."', True),
        ("Stop!", False),  # too short to trust: "Stop! What is ..." goes on
        ("Wait", False),
        ("Tell me about", False),
        ("So I was thinking...", False),  # trailing off
        ("", False),
    ],
)
def test_what_counts_as_a_finished_sentence(text, finished):
    assert is_finished_sentence(text, min_words=3) is finished


def _stt() -> WhisperSTT:
    return WhisperSTT(model=str(models.whisper_base_dir()), beam_size=1, cpu_threads=2,
                      language="en", window_secs=10.0)


@pytest.mark.slow
async def test_a_finished_question_ends_the_turn_when_its_transcript_arrives(
        espeak_wav, tmp_path):
    pcm, rate = read_pcm16(espeak_wav("What is the capital of France?", tmp_path / "q.wav"))
    stop = sentence_end_stop_strategies(user_speech_timeout=TIMEOUT, min_words=3)
    received = await stream_through(_stt(), pcm, rate, vad_in_aggregator=True, stop=stop,
                                    tail_silence=TIMEOUT + 1.5)
    ((final_at, _),) = received.of(TranscriptionFrame)
    ((turn_end_at, _),) = received.of(UserStoppedSpeakingFrame)
    assert 0 <= turn_end_at - final_at < 0.25, "the turn waited although the question was done"
    assert received.turn_end_latencies()[0] < TIMEOUT


@pytest.mark.slow
async def test_a_lone_word_waits_for_the_speech_timeout(espeak_wav, tmp_path):
    pcm, rate = read_pcm16(espeak_wav("Wait.", tmp_path / "wait.wav"))
    stop = sentence_end_stop_strategies(user_speech_timeout=TIMEOUT, min_words=3)
    received = await stream_through(_stt(), pcm, rate, vad_in_aggregator=True, stop=stop,
                                    tail_silence=TIMEOUT + 1.5)
    assert received.finals, "Whisper heard nothing"
    (latency,) = received.turn_end_latencies()
    assert latency >= TIMEOUT - 0.05, f"the turn ended {latency:.2f} s after the VAD stop"
