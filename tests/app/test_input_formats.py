"""File mode reads the audio people have: WAV of any sample format, FLAC and OGG, any rate and
channel count (made with sox from real espeak-ng speech); and a path it cannot use is
reported as what it is (missing, a directory, unreadable, not audio), exit 2, no traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from devtools.utterances import sox
from pipecatapp.transports.wavio import AudioFileError, read_audio
from tests.app.voice import USER_RATE, USER_VOICE, app_command, app_env, events, run_app

FRANCE = "What is the capital of France?"

# name -> sox output options (before the file name), file suffix
FORMATS: dict[str, tuple[list[str], str]] = {
    "wav-u8": (["-b", "8", "-e", "unsigned-integer"], ".wav"),
    "wav-s16": (["-b", "16", "-e", "signed-integer"], ".wav"),
    "wav-s24": (["-b", "24", "-e", "signed-integer"], ".wav"),
    "wav-s32": (["-b", "32", "-e", "signed-integer"], ".wav"),
    "wav-f32": (["-b", "32", "-e", "floating-point"], ".wav"),
    "wav-f64": (["-b", "64", "-e", "floating-point"], ".wav"),
    "wav-8khz": (["-r", "8000"], ".wav"),
    "wav-stereo-48khz": (["-r", "48000", "-c", "2"], ".wav"),
    "flac-44khz": (["-r", "44100"], ".flac"),
    "ogg-stereo-44khz": (["-r", "44100", "-c", "2"], ".ogg"),
}


@pytest.fixture(scope="module")
def question(tmp_path_factory, espeak_wav) -> Path:
    work = tmp_path_factory.mktemp("formats")
    return espeak_wav(FRANCE, work / "q.wav", voice=USER_VOICE, rate=USER_RATE)


def convert(source: Path, dest: Path, options: list[str], effects: list[str] | None = None
            ) -> Path:
    sox(str(source), *options, str(dest), *(effects or []))
    return dest


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalized cross-correlation of two signals (lag within 50 ms)."""
    n = min(a.size, b.size)
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    best = 0.0
    for lag in range(-800, 801, 4):
        u, v = (x[lag:], y[: n - lag]) if lag >= 0 else (x[: n + lag], y[-lag:])
        denom = np.linalg.norm(u) * np.linalg.norm(v)
        if denom:
            best = max(best, float(np.dot(u, v) / denom))
    return best


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_reads_as_the_same_speech(name, question, tmp_path):
    options, suffix = FORMATS[name]
    path = convert(question, tmp_path / f"q{suffix}", options)
    reference = read_audio(question)
    got = read_audio(path)
    assert got.sample_rate == 16000
    assert abs(got.seconds - reference.seconds) < 0.05, (got.seconds, reference.seconds)
    # Lossy or band-limited formats differ in detail; the speech is the same.
    floor = 0.6 if name in ("wav-8khz", "ogg-stereo-44khz") else 0.97
    assert _similarity(got.samples, reference.samples) > floor


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in FORMATS if n != "wav-s16"])  # s16: every e2e test
def test_file_mode_hears_each_format(name, question, tmp_path):
    """The whole app in file mode on each format: Whisper hears the question. No LLM is
    needed for that: the LLM address is a closed port, so the turn ends in the apology."""
    options, suffix = FORMATS[name]
    path = convert(question, tmp_path / f"in{suffix}", options, ["pad", "0.5", "3"])
    timeline = tmp_path / "timeline.jsonl"
    proc = run_app("-t", "file", "--input", str(path), "--output", str(tmp_path / "out.wav"),
                   "--timeline", str(timeline), "--llm-url", "http://127.0.0.1:9/v1",
                   "--set", "turn.warmup=false", "--set", "file.tail_secs=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    heard = " ".join(e["text"] for e in events(timeline) if e["event"] == "stt_final").lower()
    assert "capital" in heard and "france" in heard, f"{name}: heard {heard!r}"
    # The closed LLM port costs the turn an apology, which the record shows as spoken.
    (turn,) = [e for e in events(timeline) if e["event"] == "turn"]
    assert turn["apology"] and turn["spoken"].startswith("Sorry"), turn


def _cli_error(*args: str, prefix: tuple[str, ...] = ()) -> str:
    proc = subprocess.run([*prefix, *app_command(*args)], env=app_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


def _file_mode(path: Path, tmp_path: Path) -> list[str]:
    return ["-t", "file", "--input", str(path), "--output", str(tmp_path / "o.wav")]


def test_missing_path_says_it_does_not_exist(tmp_path):
    err = _cli_error(*_file_mode(tmp_path / "nope.wav", tmp_path))
    assert f"--input {tmp_path / 'nope.wav'} does not exist" in err


def test_directory_says_it_is_a_directory(tmp_path):
    err = _cli_error(*_file_mode(tmp_path, tmp_path))
    assert f"--input {tmp_path} is a directory, not an audio file" in err


def test_unreadable_file_says_permission_denied(question, tmp_path):
    locked = tmp_path / "locked.wav"
    locked.write_bytes(question.read_bytes())
    locked.chmod(0)
    # root reads any file: drop the capabilities that let it, as an ordinary user lacks them
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search") \
        if os.geteuid() == 0 else ()
    err = _cli_error(*_file_mode(locked, tmp_path), prefix=prefix)
    assert f"--input {locked} cannot be read (permission denied)" in err


def test_text_file_says_it_is_not_audio(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("these are my notes, not a recording\n" * 20)
    err = _cli_error(*_file_mode(text, tmp_path))
    assert f"--input {text} is not a readable audio file (WAV, FLAC or OGG)" in err


def test_too_short_says_so(question, tmp_path):
    short = convert(question, tmp_path / "short.wav", [], ["trim", "0", "0.05"])
    with pytest.raises(AudioFileError, match=r"less than 0\.1 s of audio"):
        read_audio(short)


def test_a_fifo_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioFileError, match="is not a regular file"):
        read_audio(fifo)
