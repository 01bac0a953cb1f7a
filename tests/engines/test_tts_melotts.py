"""MeloTTSService: runs where MeloTTS and a voice exist, refuses clearly where they do not.

Set ``MELOTTS_DIR`` to a directory holding a MeloTTS voice (``config.json`` and
``checkpoint.pth``, e.g. myshell-ai/MeloTTS-English) on a machine where the package from
requirements-melotts.txt is installed and its Hugging Face files are cached.
"""

from __future__ import annotations

import importlib.util
import os
import wave
from pathlib import Path

import pytest
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.tts_common import render_speech
from pipecatapp.services.tts_melotts import MeloTTSService
from tests.transcripts import words

REPLY = "Paris is the capital of France. It is a lovely city."
MELO_INSTALLED = importlib.util.find_spec("melo") is not None


def melotts_dir() -> Path:
    """The voice directory from MELOTTS_DIR, or skip saying exactly what is absent."""
    configured = os.environ.get("MELOTTS_DIR")
    if not MELO_INSTALLED:
        pytest.skip(
            "MeloTTS is not installed here (pip install -r requirements-melotts.txt, which "
            "needs github.com); its files are not reachable from this machine either"
        )
    if not configured:
        pytest.skip("MELOTTS_DIR is not set (a directory with config.json and checkpoint.pth)")
    voice = Path(configured)
    for name in ("config.json", "checkpoint.pth"):
        if not (voice / name).is_file():
            pytest.skip(f"MELOTTS_DIR={voice} has no {name}")
    return voice


@pytest.mark.slow
async def test_melotts_speech_is_heard_back_by_whisper(transcribe, tmp_path):
    voice = melotts_dir()
    tts = MeloTTSService(
        config_path=str(voice / "config.json"), ckpt_path=str(voice / "checkpoint.pth")
    )

    down, _ = await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame(REPLY)],
        pipeline_params=PipelineParams(audio_out_sample_rate=16000),
    )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert audio, "MeloTTS produced no audio frames"
    with wave.open(str(tmp_path / "reply.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(audio)
    heard = words(transcribe(tmp_path / "reply.wav"))
    missing = [w for w in words(REPLY) if w not in heard]
    print(f"melotts (load {tts.load_secs:.1f}s) -> whisper heard: {' '.join(heard)}")
    assert "paris" in heard and len(missing) <= 2, missing

    pcm, rate = render_speech(tts, "Sorry, I cannot answer right now.")
    assert rate == tts.native_sample_rate and len(pcm) > rate  # more than half a second


def test_melotts_refusal_names_everything_missing(tmp_path):
    config, ckpt = tmp_path / "config.json", tmp_path / "checkpoint.pth"
    with pytest.raises(EngineUnavailable) as error:
        MeloTTSService(config_path=str(config), ckpt_path=str(ckpt))
    message = str(error.value)
    assert message.startswith("tts.engine=melotts cannot run here")
    assert f"tts.melo_config: {config} does not exist" in message
    assert f"tts.melo_ckpt: {ckpt} does not exist" in message
    assert "myshell-ai/MeloTTS-English" in message, "the message must say where voices come from"
    if not MELO_INSTALLED:
        assert "pip install -r requirements-melotts.txt" in message


@pytest.mark.skipif(MELO_INSTALLED, reason="MeloTTS is installed here")
def test_melotts_refusal_with_files_but_no_package(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "checkpoint.pth").write_bytes(b"\0")
    with pytest.raises(EngineUnavailable) as error:
        MeloTTSService(
            config_path=str(tmp_path / "config.json"),
            ckpt_path=str(tmp_path / "checkpoint.pth"),
        )
    message = str(error.value)
    assert "MeloTTS package (module 'melo') is not installed" in message
    assert "tts.melo_config" not in message and "tts.melo_ckpt" not in message


@pytest.mark.parametrize(
    ("setting", "kwargs"),
    [("tts.melo_language", {"language": "XX"}), ("tts.melo_speed", {"speed": 0})],
)
def test_melotts_names_the_bad_setting(setting, kwargs, tmp_path):
    with pytest.raises(ConfigError) as error:
        MeloTTSService(config_path="c.json", ckpt_path="c.pth", **kwargs)
    assert error.value.setting == setting
