"""PiperTTS: the real joe-medium voice, heard back by the project's Whisper."""

from __future__ import annotations

import wave

import pytest
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from piper import SynthesisConfig

from pipecatapp import memory
from pipecatapp.embedded import models
from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.tts_common import (
    LEAD_IN_KEEP_SECS,
    lead_in_samples,
    render_speech,
    trim_lead_in,
)
from pipecatapp.services.tts_piper import PiperTTS
from tests.transcripts import words

REPLY = "Paris is the capital of France. It is a lovely city on the river Seine."


def write_wav(path, pcm: bytes, rate: int):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path


@pytest.fixture(scope="module")
def piper():
    return PiperTTS(voice_path=str(models.piper_voice()))


@pytest.mark.slow
async def test_piper_speech_is_heard_back_by_whisper(transcribe, tmp_path):
    # One fixed rendering: with Piper's noise on, Whisper base once heard "Paris" as "terris".
    piper = PiperTTS(voice_path=str(models.piper_voice()))
    piper.synthesis = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    down, _ = await run_test(
        piper,
        frames_to_send=[TTSSpeakFrame(REPLY)],
        pipeline_params=PipelineParams(audio_out_sample_rate=16000),
    )
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio, "Piper produced no audio frames"
    assert {f.sample_rate for f in audio} == {16000}, "audio not resampled to the output rate"
    assert len(audio) >= 2, "expected one chunk per sentence (streaming), got one"

    wav = write_wav(tmp_path / "reply.wav", b"".join(f.audio for f in audio), 16000)
    heard = words(transcribe(wav))
    expected = words(REPLY)
    missing = [w for w in expected if w not in heard]
    print(f"piper -> whisper heard: {' '.join(heard)}")
    assert "paris" in heard and "capital" in heard
    assert len(missing) <= 2, f"whisper did not hear {missing} in {heard}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "sentence",
    ["Hello there.", "What can I do for you today?", "Well, let me think about that."],
)
def test_piper_lead_in_is_trimmed(piper, sentence):
    rate = piper.native_sample_rate
    # Piper's synthesis is random (noise_scale): check the trim on one fixed rendering...
    raw = next(iter(piper.voice.synthesize(sentence))).audio_int16_bytes
    raw_lead_in = lead_in_samples(raw, rate) / rate
    trimmed, removed = trim_lead_in(raw, rate)
    assert removed == pytest.approx(max(0.0, raw_lead_in - LEAD_IN_KEEP_SECS), abs=1 / rate)
    assert trimmed == raw[len(raw) - len(trimmed) :], "more than the lead-in was removed"
    assert lead_in_samples(trimmed, rate) / rate <= LEAD_IN_KEEP_SECS + 0.011

    # ...and that what the adapter hands out starts with sound.
    pcm, pcm_rate = render_speech(piper, sentence)
    lead_in = lead_in_samples(pcm, rate) / rate
    print(
        f"{sentence!r}: Piper lead-in {raw_lead_in * 1000:.0f} ms, adapter {lead_in * 1000:.0f} ms"
    )
    assert pcm_rate == rate
    assert lead_in <= LEAD_IN_KEEP_SECS + 0.011


def test_trim_lead_in_keeps_silence_it_cannot_place():
    silence = bytes(2 * 22050)
    assert trim_lead_in(silence, 22050) == (silence, 0.0)


def test_piper_refuses_a_missing_voice(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"tts\.voice_path.*missing"):
        PiperTTS(voice_path=str(tmp_path / "nobody.onnx"))


def test_piper_refuses_a_voice_without_its_config(tmp_path):
    (tmp_path / "half.onnx").write_bytes(b"\0")
    with pytest.raises(EngineUnavailable, match=r"half\.onnx\.json is missing"):
        PiperTTS(voice_path=str(tmp_path / "half.onnx"))


@pytest.mark.parametrize(
    ("setting", "kwargs"),
    [("tts.length_scale", {"length_scale": 0}), ("tts.speaker", {"speaker": 3})],
)
def test_piper_names_the_bad_setting(setting, kwargs):
    with pytest.raises(ConfigError) as error:
        PiperTTS(voice_path=str(models.piper_voice()), **kwargs)
    assert error.value.setting == setting


def test_render_speech_refuses_what_it_cannot_render(piper):
    with pytest.raises(TypeError):
        render_speech(object(), "hello")
    with pytest.raises(ValueError, match="empty"):
        render_speech(piper, "   ")


LONG_SENTENCE = (
    "Once upon a time, in a land far away, there lived a brave knight who set out on a long "
    "journey across mountains and rivers to find the dragon that had been frightening the "
    "villages for many years and many long winters."
)


@pytest.mark.slow
def test_piper_memory_does_not_keep_the_longest_sentence(piper):
    """Without onnxruntime's arena, a long sentence's buffers go back to the allocator: the
    resident size after long sentences stays near what it was after a short one (with the
    arena it rose by about 180 MB and stayed there)."""
    assert piper.voice.session.get_session_options().enable_cpu_mem_arena is False
    render_speech(piper, "Hello there.")
    memory.trim()
    before = memory.rss_mb()
    for _ in range(2):
        render_speech(piper, LONG_SENTENCE)
    memory.trim()
    after = memory.rss_mb()
    assert before is not None and after is not None
    assert after - before < 80.0, f"RSS {before:.0f} -> {after:.0f} MB"


def test_sleeping_threads_still_speak(piper):
    """``spin_wait=False`` only changes how onnxruntime's threads wait: the session says so,
    and the voice still speaks the sentence (Piper's noise makes no two renderings equal, so
    the lengths are compared)."""
    sleeping = PiperTTS(voice_path=str(models.piper_voice()), spin_wait=False)
    options = sleeping.voice.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="allow_spinning"):  # unset: onnxruntime spins
        piper.voice.session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning")
    spinning_len, sleeping_len = (
        sum(len(c.audio_int16_bytes) for c in tts.voice.synthesize(REPLY))
        for tts in (piper, sleeping))
    assert sleeping_len > 0
    assert abs(sleeping_len - spinning_len) <= 0.25 * spinning_len


@pytest.mark.parametrize(("profile", "entry"), [("tuned", "0"), ("stock", None)])
def test_the_tuned_profile_lets_piper_threads_sleep(profile, entry):
    from pipecatapp.config import load_config
    from pipecatapp.services import factory

    tts = factory.build_tts(load_config(environ={"PIPECATAPP_PROFILE": profile}))
    options = tts.voice.session.get_session_options()
    try:
        found = options.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # unset: onnxruntime's default, spinning
        found = None
    assert found == entry
