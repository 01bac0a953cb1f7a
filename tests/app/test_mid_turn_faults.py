"""Faults in the middle of a turn cost that turn only: the apology within 2 s, the session
goes on and the next question is answered.

- the LLM server is killed (SIGKILL, for real) while it streams an answer;
- the TTS engine raises on a sentence, and the STT engine raises on an utterance: these use
  fault injectors (``FaultInjectingPiperTTS``, ``fault_injecting_transcribe``) that wrap the
  real engines and raise on one trigger; everything else is real (espeak-ng speech, Whisper,
  Piper, SmolLM2 on llama-server, the file transport), run in-process through the CLI.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pipecat.frames.frames import LLMFullResponseStartFrame

from pipecatapp import cli
from pipecatapp.embedded import models
from pipecatapp.embedded.server import LlamaServer, free_port
from pipecatapp.services import stt_whisper, tts_piper
from tests.app.counting_proxy import CountingProxy
from tests.app.voice import (
    app_command,
    app_env,
    compose,
    cut,
    duration,
    events,
    say,
    turns,
    wait_for,
)

pytestmark = pytest.mark.slow

FRANCE = "What is the capital of France?"
WEEK = "How many days are in a week?"
STORY = "Please tell me a long story about a dragon"


def _conversation(espeak_wav, tmp_path: Path, texts: list[str], gap: float = 11.0) -> Path:
    parts, at = [], 0.5
    for i, text in enumerate(texts):
        wav = say(espeak_wav, tmp_path, text, f"q{i}")
        parts.append((at, wav))
        at += duration(wav) + gap
    return compose(tmp_path / "in.wav", parts, total=at)


def _args(wav: Path, tmp_path: Path, url: str, *extra: str) -> list[str]:
    return ["-t", "file", "--input", str(wav), "--output", str(tmp_path / "out.wav"),
            "--timeline", str(tmp_path / "timeline.jsonl"), "--llm-url", url,
            "--set", "llm.temperature=0", "--max-tokens", "40", *extra]


def _answer(transcribe, tmp_path: Path, turn: dict[str, Any], name: str) -> str:
    assert turn["audio"], turn
    return transcribe(cut(tmp_path / "out.wav", turn["bot_audio_start"], turn["bot_audio_stop"],
                          tmp_path / f"{name}.wav")).lower()


def _answered_paris(transcribe, tmp_path: Path, turn: dict[str, Any], name: str) -> None:
    """The turn's played answer says Paris: the timeline's spoken text names it, and the
    output audio, transcribed, is that text (Whisper sometimes hears the bot's "Paris" as
    "Harris", so most of the spoken words count as heard too)."""
    spoken = (turn.get("spoken") or "").lower()
    assert "paris" in spoken, turn
    heard = _answer(transcribe, tmp_path, turn, name)
    said = set(re.findall(r"[a-z]{3,}", spoken))
    overlap = said & set(re.findall(r"[a-z]{3,}", heard))
    assert "paris" in heard or len(overlap) >= max(2, len(said) // 2), (spoken, heard)


def _event(timeline: Path, name: str, turn: int) -> dict[str, Any]:
    found = [e for e in events(timeline) if e["event"] == name and e.get("turn") == turn]
    assert found, f"no {name} event for turn {turn}: {events(timeline)[-20:]}"
    return found[0]


# -- the LLM server killed mid-stream ------------------------------------------------------


def test_llm_server_killed_mid_stream(tmp_path, espeak_wav, transcribe):
    wav = _conversation(espeak_wav, tmp_path, [FRANCE, STORY, FRANCE], gap=13.0)
    timeline = tmp_path / "timeline.jsonl"
    port = free_port()
    server = LlamaServer(models.smollm2_gguf(), port=port, log_path=tmp_path / "llm1.log")
    server.start().wait_ready(120)
    app = subprocess.Popen(
        app_command(*_args(wav, tmp_path, server.base_url, "--max-tokens", "150")),
        env=app_env(), stdout=subprocess.DEVNULL, stderr=(tmp_path / "app.log").open("w"),
    )
    try:
        # The story is streaming: kill the server for real, no goodbye.
        wait_for(timeline, app, lambda e: e["event"] == "llm_first_token" and e["turn"] == 2,
                  90)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        server.stop()
        server = LlamaServer(models.smollm2_gguf(), port=port, log_path=tmp_path / "llm2.log")
        server.start().wait_ready(120)  # back before the third question
        assert app.wait(timeout=150) == 0, (tmp_path / "app.log").read_text()[-4000:]
    finally:
        app.kill()
        server.stop()
    records = [t for t in turns(timeline) if t["text"]]
    assert len(records) == 3, turns(timeline)
    first, killed, third = records
    assert "story" in killed["text"].lower(), killed
    assert killed["apology"] and killed["llm_error"], killed
    first_token = _event(timeline, "llm_first_token", killed["turn"])["t"]
    apology = _event(timeline, "apology", killed["turn"])["t"]
    assert apology - first_token <= 2.0, f"apology {apology - first_token:.2f} s after the kill"
    assert killed["spoken"].endswith("Please try again in a moment."), killed
    _answered_paris(transcribe, tmp_path, first, "a1")
    _answered_paris(transcribe, tmp_path, third, "a3")


# -- the TTS engine raising on a sentence ---------------------------------------------------


class FaultInjectingPiperTTS(tts_piper.PiperTTS):
    """Fault injector: the real Piper adapter, raising on every sentence of the LLM's
    ``BROKEN_ANSWER``-th answer (as an engine failing on a sentence would)."""

    BROKEN_ANSWER = 2
    injected: ClassVar[list[str]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers = 0

    async def process_frame(self, frame: Any, direction: Any) -> None:
        if isinstance(frame, LLMFullResponseStartFrame):
            self.answers += 1
        await super().process_frame(frame, direction)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Any, None]:
        if self.answers == self.BROKEN_ANSWER:
            FaultInjectingPiperTTS.injected.append(text)
            raise RuntimeError(f"injected TTS fault on [{text}]")
        async for frame in super().run_tts(text, context_id):
            yield frame


def test_tts_raising_on_a_sentence(tmp_path, espeak_wav, transcribe, smollm2_server,
                                   monkeypatch):
    FaultInjectingPiperTTS.injected = []
    monkeypatch.setattr(tts_piper, "PiperTTS", FaultInjectingPiperTTS)
    wav = _conversation(espeak_wav, tmp_path, [FRANCE, WEEK, FRANCE])
    timeline = tmp_path / "timeline.jsonl"
    assert cli.main(_args(wav, tmp_path, smollm2_server.base_url,
                          "--set", "turn.warmup=false")) == 0
    assert FaultInjectingPiperTTS.injected, "the second answer never reached the TTS"
    records = [t for t in turns(timeline) if t["text"]]
    assert len(records) == 3, turns(timeline)
    first, broken, third = records
    assert "week" in broken["text"].lower(), broken
    assert broken["apology"] and broken["failed_stage"] == "tts", broken
    first_token = _event(timeline, "llm_first_token", broken["turn"])["t"]
    assert broken["bot_audio_start"] - first_token <= 2.0, broken
    assert broken["spoken"].startswith("Sorry, I can't answer"), broken
    assert "sorry" in _answer(transcribe, tmp_path, broken, "a2")
    _answered_paris(transcribe, tmp_path, first, "a1")
    _answered_paris(transcribe, tmp_path, third, "a3")


# -- the STT engine raising on an utterance -------------------------------------------------


def test_stt_raising_on_an_utterance(tmp_path, espeak_wav, transcribe, smollm2_server,
                                     monkeypatch):
    real = stt_whisper.transcribe_readings
    injected: ClassVar[list[str]] = []

    def fault_injecting_transcribe(*args: Any, **kwargs: Any) -> Any:
        """Fault injector: the real decode, raising on every utterance that is not the
        question about France (the one about the week, however Whisper hears it)."""
        decoded = real(*args, **kwargs)
        text = decoded.text.lower()
        if text and not any(word in text for word in ("capital", "france")):
            injected.append(decoded.text)
            raise RuntimeError("injected STT fault")
        return decoded

    monkeypatch.setattr(stt_whisper, "transcribe_readings", fault_injecting_transcribe)
    wav = _conversation(espeak_wav, tmp_path, [FRANCE, WEEK, FRANCE])
    timeline = tmp_path / "timeline.jsonl"
    with CountingProxy(smollm2_server.base_url).running() as proxy:
        assert cli.main(_args(wav, tmp_path, proxy.base_url, "--set", "turn.warmup=false")) == 0
    assert injected, "the question about the week never reached the STT"
    records = turns(timeline)
    assert len(records) == 3, records
    first, broken, third = records
    assert "france" in first["text"].lower(), first
    assert broken["text"] == "" and broken["not_understood"] == "stt_failed", broken
    assert broken["apology"] and broken["failed_stage"] == "stt", broken
    assert broken["voice_to_voice"] <= 2.0, broken
    assert "sorry" in _answer(transcribe, tmp_path, broken, "a2")
    assert [("france" in t.lower()) for t in proxy.user_texts()] == [True, True]
    _answered_paris(transcribe, tmp_path, third, "a3")
