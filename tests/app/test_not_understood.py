"""Speech the bot did not understand, and sounds that are not speech, as a user meets them:
``python -m pipecatapp -t file`` with real espeak-ng speech (a voice unlike the bot's), the
same speech reversed with sox (speech-like, not words), a white-noise burst, real Whisper and
Piper, SmolLM2 on a real llama-server behind a counting proxy (so the test sees every request
the LLM got), and the bot's audio transcribed back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.utterances import sox
from tests.app.counting_proxy import CountingProxy
from tests.app.voice import (
    compose,
    cut,
    duration,
    events,
    run_app,
    say,
    turns,
)

pytestmark = pytest.mark.slow

FRANCE = "What is the capital of France?"
WEEK = "How many days are in a week?"
GARBLED = "How many legs does a spider have?"


def _reversed(espeak_wav, tmp_path: Path, text: str) -> Path:
    """The utterance played backwards: speech to the VAD, no words to Whisper."""
    forward = say(espeak_wav, tmp_path, text, "forward")
    sox(str(forward), str(tmp_path / "reversed.wav"), "reverse")
    return tmp_path / "reversed.wav"


def _noise(tmp_path: Path, seconds: float = 0.6) -> Path:
    out = tmp_path / "noise.wav"
    sox("-n", "-r", "16000", "-c", "1", "-b", "16", str(out), "synth", f"{seconds}",
         "whitenoise", "vol", "0.5")
    return out


def _args(wav: Path, out: Path, timeline: Path, url: str, *extra: str) -> list[str]:
    return ["-t", "file", "--input", str(wav), "--output", str(out), "--timeline",
            str(timeline), "--llm-url", url, "--set", "llm.temperature=0",
            "--max-tokens", "40", *extra]


def test_not_understood_is_answered_at_once_without_the_llm_and_noise_is_ignored(
    tmp_path, smollm2_server, espeak_wav, transcribe
):
    france = say(espeak_wav, tmp_path, FRANCE, "france")
    garbled = _reversed(espeak_wav, tmp_path, GARBLED)
    noise = _noise(tmp_path)
    week = say(espeak_wav, tmp_path, WEEK, "week")
    at_garbled = 0.5 + duration(france) + 9.0
    at_noise = at_garbled + duration(garbled) + 5.0
    at_week = at_noise + duration(noise) + 4.0
    wav = compose(tmp_path / "in.wav",
                  [(0.5, france), (at_garbled, garbled), (at_noise, noise), (at_week, week)],
                  total=at_week + duration(week) + 9.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    with CountingProxy(smollm2_server.base_url).running() as proxy:
        proc = run_app(*_args(wav, out, timeline, proxy.base_url, "--set", "turn.warmup=false"),
                       timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = turns(timeline)
    # Three user turns: the question, the garbled one, the second question; no noise turn.
    assert len(records) == 3, records
    first, garbled_turn, second = records
    assert "france" in first["text"].lower(), first
    assert "week" in second["text"].lower(), second
    # The garbled speech: not understood, nothing sent to the LLM, the bot says so at once.
    assert garbled_turn["text"] == "" and garbled_turn["llm_chars"] == 0, garbled_turn
    assert garbled_turn["not_understood"] in ("low_confidence", "no_transcript"), garbled_turn
    assert garbled_turn["audio"] and not garbled_turn["apology"], garbled_turn
    assert garbled_turn["voice_to_voice"] <= 1.0, (
        f"'didn't catch that' began {garbled_turn['voice_to_voice']} s after the speech ended")
    heard = transcribe(cut(out, garbled_turn["bot_audio_start"],
                           garbled_turn["bot_audio_stop"], tmp_path / "sorry.wav")).lower()
    assert "catch that" in heard, heard
    assert garbled_turn["spoken"] == "Sorry, I didn't catch that.", garbled_turn
    # The LLM got exactly the two questions (the proxy saw every request).
    asked = proxy.user_texts()
    assert len(asked) == 2, asked
    assert "france" in asked[0].lower() and "week" in asked[1].lower(), asked
    # The noise burst: no turn, no bot audio from it until the second question.
    t0 = next(e["t"] for e in events(timeline) if e["event"] == "input_start")
    quiet_from, quiet_to = t0 + at_noise, t0 + at_week
    assert not [e for e in events(timeline) if e["event"] in ("vad_start", "bot_audio_start")
                and quiet_from - 0.1 <= e["t"] < quiet_to], events(timeline)
    assert "paris" in transcribe(cut(out, first["bot_audio_start"], first["bot_audio_stop"],
                                     tmp_path / "a1.wav")).lower()
    assert "seven" in transcribe(cut(out, second["bot_audio_start"], second["bot_audio_stop"],
                                      tmp_path / "a2.wav")).lower().replace("7", "seven")


def test_off_stays_silent_and_keeps_listening(tmp_path, espeak_wav):
    """``tts.not_understood=off``: no reply at all, and no LLM (its address is a closed port,
    so any request would cost an apology)."""
    garbled = _reversed(espeak_wav, tmp_path, GARBLED)
    wav = compose(tmp_path / "in.wav", [(0.5, garbled)], total=duration(garbled) + 4.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    proc = run_app(*_args(wav, out, timeline, "http://127.0.0.1:9/v1", "--set",
                          "tts.not_understood=off", "--set", "turn.warmup=false"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (turn,) = turns(timeline)
    assert turn["not_understood"] and not turn["audio"] and not turn["apology"], turn
    assert turn["no_audio_reason"].startswith("not understood"), turn
    assert not [e for e in events(timeline) if e["event"] in ("llm_start", "llm_error")]


def test_whisper_fallback_forced_still_ends_within_the_bound(tmp_path, espeak_wav):
    """Reversed speech makes Whisper retry at higher temperatures (5-10 s unbounded here).
    With the bound at 5 s the retries that fit run (the first full-window retry is estimated
    at 7.5x the short pass, so a lower bound on a busy machine may leave no room for one),
    the rest are cut, and the turn is over (not understood) within the bound after the VAD's
    end of speech."""
    bound = 5.0
    garbled = _reversed(espeak_wav, tmp_path, GARBLED)
    wav = compose(tmp_path / "in.wav", [(0.5, garbled)], total=duration(garbled) + 6.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    proc = run_app(*_args(wav, out, timeline, "http://127.0.0.1:9/v1",
                          "--set", f"stt.max_secs={bound}", "--set", "turn.warmup=false"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    everything = events(timeline)
    (verdict,) = [e for e in everything if e["event"] == "not_understood"]
    assert verdict["attempts"] >= 2, f"the fallback did not run: {verdict}"
    assert verdict["cut"] or verdict["attempts"] == 7, verdict
    assert verdict["stt_secs"] <= bound, verdict
    vad_stop = max(e["t"] for e in everything if e["event"] == "vad_stop")
    (turn,) = turns(timeline)
    assert turn["user_turn_stop"] - vad_stop <= bound + 0.2, (turn, vad_stop)
    assert turn["spoken"] == "Sorry, I didn't catch that.", turn
