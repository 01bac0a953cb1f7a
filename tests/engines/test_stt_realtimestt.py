"""RealtimeSTTService: real RealtimeSTT recorder, real Whisper base, real espeak-ng speech."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
)

from pipecatapp.embedded import models
from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.stt_realtimestt import RealtimeSTTService
from tests.transcripts import close_enough, words

from .audio_pipeline import read_pcm16, stream_through

QUESTION = "What is the weather like in London today?"
# Long enough (about 7 s) for interim passes to finish while it is spoken even when the two
# cores are shared (a pass then takes up to 2.5 s; interims landing after the VAD stop are
# dropped as stale). Said with a VAD stop_secs of 0.5 s: espeak-ng breathes after "dragon".
LONG = (
    "Please tell me a short story about a friendly dragon who lives in a cave by the sea "
    "and reads books all day."
)


def make_service(**overrides) -> RealtimeSTTService:
    args = {
        "model": str(models.whisper_base_dir()),
        "beam_size": 1,
        "cpu_threads": 2,
        "language": "en",
        "silero_onnx_path": str(models.silero_vad_onnx()),
    } | overrides
    return RealtimeSTTService(**args)


@pytest.mark.slow
async def test_realtimestt_gives_interims_then_the_final(espeak_wav, tmp_path):
    pcm, rate = read_pcm16(espeak_wav(LONG, tmp_path / "long.wav"))
    stt = make_service()

    # stop_secs 0.5: espeak-ng's short breath after "dragon" is not the end of the utterance.
    received = await stream_through(stt, pcm, rate, vad_stop_secs=0.5)

    assert received.finals, "no final transcript"
    assert len(received.finals) == 1, received.finals
    assert close_enough(received.finals[0], LONG, max_errors=2), received.finals
    interims = received.of(InterimTranscriptionFrame)
    ((final_at, final),) = received.of(TranscriptionFrame)
    assert final.finalized, "the final must be marked finalized so the turn can end at once"
    assert interims, "no interim transcript while the user spoke"
    assert all(at < final_at for at, _ in interims), "an interim arrived after the final"
    # The first interim may be a fragment ("Clean" for "Please..."); later ones carry words.
    last_interim = words(interims[-1][1].text)
    assert len(set(last_interim) & set(words(LONG))) >= 3, received.interims
    (latency,) = received.final_latencies()
    print(
        f"realtimestt: ready in {stt.load_secs:.2f}s; interims {received.interims}; "
        f"VAD stop -> final {latency:.2f}s (from the {stt.final_sources[0]} pass)"
    )
    assert latency < 10


@pytest.mark.slow
async def test_realtimestt_keeps_utterances_apart(espeak_wav, tmp_path):
    first, rate = read_pcm16(espeak_wav(QUESTION, tmp_path / "first.wav"))
    second, _ = read_pcm16(espeak_wav(LONG, tmp_path / "second.wav"))
    stt = make_service()

    audio = first + bytes(int(rate * 1.5) * 2) + second
    received = await stream_through(stt, audio, rate, vad_stop_secs=0.5)

    assert len(received.finals) == 2, received.finals
    assert close_enough(received.finals[0], QUESTION), received.finals
    assert close_enough(received.finals[1], LONG, max_errors=2), received.finals
    # Each utterance's interims belong to it: none of the first's words leak into the second.
    first_final_at = received.of(TranscriptionFrame)[0][0]
    later = [f.text for at, f in received.of(InterimTranscriptionFrame) if at > first_final_at]
    assert later, "no interim for the second utterance"
    assert all("london" not in words(text) for text in later), later


@pytest.mark.slow
async def test_realtimestt_shuts_its_recorder_down(espeak_wav, tmp_path):
    pcm, rate = read_pcm16(espeak_wav("Good morning.", tmp_path / "hello.wav"))
    stt = make_service()
    recorder = stt.recorder

    await stream_through(stt, pcm, rate, tail_silence=1.0)

    assert recorder.is_shut_down
    assert not recorder.recording_thread.is_alive()
    assert not recorder.realtime_thread.is_alive()


def test_realtimestt_refuses_a_missing_silero_model(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"stt\.silero_onnx_path"):
        make_service(silero_onnx_path=str(tmp_path / "silero.onnx"))


@pytest.mark.parametrize(
    ("setting", "overrides"),
    [
        ("stt.beam_size", {"beam_size": 0}),
        ("stt.realtime_pause_secs", {"realtime_pause_secs": 0}),
        ("stt.preroll_secs", {"preroll_secs": 0.0}),
        ("stt.language", {"language": "klingon"}),
    ],
)
def test_realtimestt_names_the_bad_setting(setting, overrides):
    with pytest.raises(ConfigError) as error:
        make_service(**overrides)
    assert error.value.setting == setting


@pytest.mark.slow
async def test_realtimestt_ends_the_user_turn_in_the_apps_arrangement(espeak_wav, tmp_path):
    """VAD in the user aggregator (frames come back upstream); the final ends the turn."""
    pcm, rate = read_pcm16(espeak_wav(LONG, tmp_path / "long.wav"))
    stt = make_service()

    received = await stream_through(stt, pcm, rate, vad_in_aggregator=True, vad_stop_secs=0.5)

    assert len(received.finals) == 1, received.finals
    assert close_enough(received.finals[0], LONG, max_errors=2), received.finals
    assert received.interims, "no interim transcript while the user spoke"
    ((final_at, _),) = received.of(TranscriptionFrame)
    ((turn_end_at, _),) = received.of(UserStoppedSpeakingFrame)
    assert 0 <= turn_end_at - final_at < 0.25, "the turn did not end when the final came"
    print(f"realtimestt: VAD stop -> turn end {received.turn_end_latencies()[0]:.2f}s")


@pytest.mark.slow
async def test_realtimestt_reuses_an_interim_that_heard_everything(espeak_wav, tmp_path):
    """With a long VAD stop, an interim pass starts after the speech: it becomes the final."""
    pcm, rate = read_pcm16(espeak_wav(QUESTION, tmp_path / "question.wav"))
    stt = make_service(beam_size=1)

    received = await stream_through(stt, pcm, rate, vad_stop_secs=2.0, tail_silence=3.5)

    assert len(received.finals) == 1, received.finals
    assert close_enough(received.finals[0], QUESTION), received.finals
    assert stt.final_sources == ["interim"], "the complete interim pass was not reused"
    assert len(stt.final_lane.passes) == 0, "a final pass ran although the interim had it all"
    print(f"realtimestt reused interim: VAD stop -> final {received.final_latencies()[0]:.2f}s")


@pytest.mark.slow
async def test_realtimestt_beam_finals_always_rerun(espeak_wav, tmp_path):
    pcm, rate = read_pcm16(espeak_wav(QUESTION, tmp_path / "question.wav"))
    stt = make_service(beam_size=5)

    received = await stream_through(stt, pcm, rate, vad_stop_secs=2.0, tail_silence=3.5)

    assert len(received.finals) == 1, received.finals
    assert close_enough(received.finals[0], QUESTION), received.finals
    assert stt.final_sources == ["final"] and len(stt.final_lane.passes) == 1
