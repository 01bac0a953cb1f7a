"""The command line as a user meets it: clear errors with exit status 2 and no traceback,
a whole file-mode session on the tiny model, and secrets kept out of the logs."""

from __future__ import annotations

import json
import wave

import pytest

from tests.app.nomad_double import TOKEN, NomadDouble
from tests.app.voice import USER_RATE, USER_VOICE, compose, events, run_app, turns


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_malformed_wav_exits_2_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    proc = run_app("-t", "file", "--input", str(bad), "--output", str(tmp_path / "o.wav"),
                   timeout=60)
    assert proc.returncode == 2
    assert "is not a readable audio file" in proc.stderr
    _no_traceback(proc)


def test_too_short_input_exits_2(tmp_path):
    path = tmp_path / "short.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(16000)
        w.writeframes(bytes(800))
    proc = run_app("-t", "file", "--input", str(path), "--output", str(tmp_path / "o.wav"),
                   timeout=60)
    assert proc.returncode == 2
    assert "holds less than 0.1 s of audio" in proc.stderr
    _no_traceback(proc)


def test_missing_wav_exits_2(tmp_path):
    proc = run_app("-t", "file", "--input", str(tmp_path / "nope.wav"), "--output", "o.wav",
                   timeout=60)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    _no_traceback(proc)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--set", "stt.beam_size=0"], {}, "stt.beam_size: must be between 1 and 10"),
        ([], {"PIPECATAPP_VAD_START_SECS": "soon"}, "vad.start_secs: must be a number"),
        (["-t", "file", "--output", "o.wav"], {}, "file.input: the file transport needs"),
        (["--set", "nonsense"], {}, "--set: expected NAME=VALUE"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(args, env, message):
    proc = run_app(*args, timeout=60, **env)
    assert proc.returncode == 2
    assert message in proc.stderr
    _no_traceback(proc)


def test_local_transport_without_a_sound_card_says_so():
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        has_card = pa.get_device_count() > 0
    finally:
        pa.terminate()
    if has_card:
        pytest.skip("this machine has a sound card")
    proc = run_app("-t", "local", "--llm-url", "http://127.0.0.1:9/v1", timeout=60)
    assert proc.returncode == 2
    assert "transport=local: no microphone found" in proc.stderr
    _no_traceback(proc)


def test_file_session_on_the_tiny_model(tmp_path, tiny_server, espeak_wav):
    """A whole session, fast: real Whisper and Piper, the tiny random model as the LLM.
    The reply is random text; what is checked is the flow and the timeline."""
    secret = "sk-test-secret-0123456789abcdef"
    question = espeak_wav("What is the capital of France?", tmp_path / "q.wav",
                          voice=USER_VOICE, rate=USER_RATE)
    wav = compose(tmp_path / "in.wav", [(0.5, question)], total=6.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    proc = run_app(
        "-t", "file", "--input", str(wav), "--output", str(out), "--timeline", str(timeline),
        "--llm-url", tiny_server.base_url, "--set", "llm.max_tokens=12",
        "--set", "llm.temperature=0", "--log-level", "DEBUG",
        PIPECATAPP_LLM_API_KEY=secret,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert secret not in proc.stderr + proc.stdout
    assert secret not in timeline.read_text()
    names = [e["event"] for e in events(timeline)]
    for name in ("input_start", "vad_start", "stt_final", "llm_first_token", "input_end"):
        assert name in names, names
    assert names.index("stt_final") < names.index("llm_first_token")
    (turn,) = turns(timeline)
    assert "capital" in turn["text"].lower()
    assert turn["llm_chars"] > 0
    assert turn["user_speech_stop"] < turn["stt_final"] < turn["llm_first_token"]
    if turn["audio"]:
        assert turn["voice_to_voice"] > 0
        assert turn["bot_audio_start"] >= turn["tts_first_audio"] - 0.05
    else:  # random text Piper could not speak: logged with its reason, never dropped
        assert turn["no_audio_reason"]
    with wave.open(str(out), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        assert w.getnframes() / w.getframerate() >= 5.0  # on the input's clock
    json.dumps(turn)  # the summary is plain JSON


def test_melotts_without_its_files_exits_2_saying_what_is_missing(tmp_path, espeak_wav):
    wav = espeak_wav("Hello.", tmp_path / "hello.wav")
    proc = run_app(
        "-t", "file", "--input", str(wav), "--output", str(tmp_path / "o.wav"),
        "--llm-url", "http://127.0.0.1:9/v1", "--tts", "melotts",
        "--set", f"tts.melo_config={tmp_path / 'config.json'}",
        "--set", f"tts.melo_ckpt={tmp_path / 'checkpoint.pth'}",
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "melotts" in proc.stderr.lower()
    _no_traceback(proc)


def test_melotts_needs_its_paths():
    proc = run_app("--tts", "melotts", timeout=60)
    assert proc.returncode == 2
    assert "tts.melo_config: MeloTTS needs its local config.json" in proc.stderr
    _no_traceback(proc)


def test_llm_found_through_nomad(tmp_path, fake_nomad, tiny_server, espeak_wav):
    """No LLM URL, NOMAD_ADDR set: the app asks Nomad's service registry (fake_nomad, a test
    double) for primacpp-api and talks to what it names (here the tiny llama-server)."""
    NomadDouble.services["primacpp-api"] = [
        {"ServiceName": "primacpp-api", "Address": "127.0.0.1", "Port": tiny_server.port}
    ]
    # A question Whisper hears clearly: what it does not understand never reaches the LLM.
    question = espeak_wav("What is the capital of France?", tmp_path / "q.wav",
                          voice=USER_VOICE, rate=USER_RATE)
    wav = compose(tmp_path / "in.wav", [(0.5, question)], total=5.0)
    timeline = tmp_path / "timeline.jsonl"
    proc = run_app(
        "-t", "file", "--input", str(wav), "--output", str(tmp_path / "out.wav"),
        "--timeline", str(timeline), "--set", "llm.max_tokens=8", "--log-level", "DEBUG",
        NOMAD_ADDR=fake_nomad, NOMAD_TOKEN=TOKEN,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"http://127.0.0.1:{tiny_server.port}/v1" in proc.stderr
    assert TOKEN not in proc.stderr
    assert any(e["event"] == "llm_first_token" for e in events(timeline))
    assert any(s["path"].startswith("/v1/service/primacpp-api") for s in NomadDouble.seen)
