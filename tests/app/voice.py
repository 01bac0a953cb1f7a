"""Helpers for the voice tests: compose the user's WAV, run the app as a user would, read its
timeline, cut the bot's answers out of the output WAV."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipecatapp.timeline import read_timeline
from pipecatapp.transports.wavio import read_audio

# The user's voice: espeak-ng's en-us+m3 at 120 wpm, which Whisper base hears word for word
# in these questions (the default en-us voice at 160 wpm is heard as "capital and friends").
USER_VOICE = "en-us+m3"
USER_RATE = 120
RATE = 16000


def say(espeak_wav: Callable[..., Path], tmp_path: Path, text: str, name: str) -> Path:
    """``text`` spoken in the test user's voice (unlike the bot's) into ``tmp_path/name.wav``."""
    return espeak_wav(text, tmp_path / f"{name}.wav", voice=USER_VOICE, rate=USER_RATE)


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    speech = read_audio(path, None, what="test audio", min_seconds=0)
    return speech.samples, speech.sample_rate


def compose(path: Path, parts: Sequence[tuple[float, Path]], total: float) -> Path:
    """A 16 kHz mono WAV of ``total`` seconds with each utterance placed at its start time."""
    out = np.zeros(int(total * RATE), dtype=np.int16)
    for start, wav in parts:
        pcm, rate = read_pcm(wav)
        assert rate == RATE, f"{wav} is {rate} Hz"
        at = int(start * RATE)
        out[at : at + pcm.size] = pcm[: max(0, out.size - at)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(out.tobytes())
    return path


def duration(path: Path) -> float:
    pcm, rate = read_pcm(path)
    return pcm.size / rate


def app_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipecatapp", *args]


def app_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECATAPP_", "NOMAD_"))}
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


def run_app(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        app_command(*args), env=app_env(**env), capture_output=True, text=True, timeout=timeout
    )


def events(path: Path) -> list[dict[str, Any]]:
    return read_timeline(path)


def wait_for(timeline: Path, proc: subprocess.Popen, predicate: Callable[[dict], bool],
             timeout: float) -> dict[str, Any]:
    """The first timeline event matching ``predicate``, while the app process is still alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events(timeline):
            if predicate(event):
                return event
        assert proc.poll() is None, "the app exited early"
        time.sleep(0.02)
    raise AssertionError(f"timed out; timeline: {events(timeline)[-10:]}")


def turns(path: Path) -> list[dict[str, Any]]:
    return [e for e in events(path) if e["event"] == "turn"]


def cut(wav: Path, start: float, end: float | None, dest: Path) -> Path:
    """The part of the output WAV between two app-clock times (the output is on that clock)."""
    pcm, rate = read_pcm(wav)
    a = max(0, int(start * rate))
    b = pcm.size if end is None else min(pcm.size, int(end * rate))
    with wave.open(str(dest), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm[a:b].tobytes())
    return dest
