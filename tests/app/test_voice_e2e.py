"""End to end, as a user would run it: ``python -m pipecatapp -t file`` with real speech in
(espeak-ng, a voice unlike the bot's), SmolLM2 on a real llama-server, real Whisper /
RealtimeSTT and Piper, and the bot's answer transcribed back by the project's STT.

Each test asserts on the user transcript first, so a failure says which stage broke.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipecatapp.embedded import models
from pipecatapp.embedded.server import LlamaServer, free_port
from tests.app.voice import (
    app_command,
    app_env,
    compose,
    cut,
    duration,
    events,
    read_pcm,
    run_app,
    say,
    turns,
    wait_for,
)

pytestmark = pytest.mark.slow

FRANCE = "What is the capital of France?"


def _file_args(wav: Path, out: Path, timeline: Path, url: str, *extra: str) -> list[str]:
    return [
        "-t", "file", "--input", str(wav), "--output", str(out), "--timeline", str(timeline),
        "--llm-url", url, "--set", "llm.temperature=0", *extra,
    ]


def _heard(transcribe, out: Path, turn: dict, dest: Path, end: float | None = None) -> str:
    assert turn["audio"], f"turn {turn['turn']} produced no audio: {turn}"
    stop = end if end is not None else turn["bot_audio_stop"]
    return transcribe(cut(out, turn["bot_audio_start"], stop, dest)).lower()


@pytest.mark.parametrize("stt", ["whisper", "realtimestt"])
def test_capital_of_france(stt, tmp_path, smollm2_server, espeak_wav, transcribe):
    question = say(espeak_wav, tmp_path, FRANCE, "france")
    wav = compose(tmp_path / "in.wav", [(0.5, question)], total=duration(question) + 8.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    proc = run_app(*_file_args(wav, out, timeline, smollm2_server.base_url,
                               "--stt", stt, "--tts", "piper"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    answered = [t for t in turns(timeline) if t["text"]]
    assert answered, f"no transcript: {events(timeline)}"
    user = answered[0]["text"].lower()
    assert "capital" in user and "france" in user, f"{stt} heard {user!r}"
    reply = _heard(transcribe, out, answered[0], tmp_path / "reply.wav")
    assert "paris" in reply, f"the bot said {reply!r}"
    assert 0 < answered[0]["voice_to_voice"] < 6.0


def test_barge_in_stops_the_bot_and_answers_the_new_question(
    tmp_path, smollm2_server, espeak_wav, transcribe
):
    story = say(espeak_wav, tmp_path, "Please tell me a long story about a dragon", "story")
    france = say(espeak_wav, tmp_path, FRANCE, "france")
    q2_at = 0.5 + duration(story) + 9.0  # the bot is in the middle of its story by then
    wav = compose(tmp_path / "in.wav", [(0.5, story), (q2_at, france)],
                  total=q2_at + duration(france) + 8.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    proc = run_app(*_file_args(wav, out, timeline, smollm2_server.base_url))
    assert proc.returncode == 0, proc.stderr[-4000:]
    spoken = [t for t in turns(timeline) if t["text"]]
    assert len(spoken) >= 2, f"turns: {turns(timeline)}"
    first, second = spoken[0], spoken[-1]
    assert "story" in first["text"].lower(), first["text"]
    assert "france" in second["text"].lower(), second["text"]
    # The bot was talking when the second question began, and went quiet in time.
    onset = first["barge_in_onset"]
    assert first["interrupted"], first
    assert first["bot_audio_start"] < onset, first
    # On a busy machine Piper can leave a short gap between two sentences, so the last sample
    # may fall just before the onset; what matters is that nothing plays 300 ms after it.
    assert first["bot_audio_stop"] <= onset + 0.300, first
    assert first["barge_in_latency"] <= 0.300, f"barge-in took {first['barge_in_latency']} s"
    # The output really is silent from then until the new answer (nothing was played).
    gap, _ = read_pcm(cut(out, first["bot_audio_stop"] + 0.05, second["bot_audio_start"] - 0.05,
                          tmp_path / "gap.wav"))
    assert gap.size > 0 and int(abs(gap.astype(int)).max()) < 200
    reply = _heard(transcribe, out, second, tmp_path / "reply.wav")
    assert "paris" in reply, f"the bot said {reply!r}"
    # The context keeps only what was spoken of the interrupted story (whole sentences that
    # were played), not the rest the LLM had generated.
    (context,) = [e["messages"] for e in events(timeline) if e["event"] == "context"]
    roles = [m["role"] for m in context]
    asked = roles.index("user", 1) if roles.count("user") > 1 else len(roles)
    story_said = " ".join(m["content"] for m in context[:asked] if m["role"] == "assistant")
    assert len(story_said) < first["llm_chars"], (story_said, first["llm_chars"])
    assert context[-1]["role"] == "assistant" and "paris" in context[-1]["content"].lower()
    # The turn records say the same: the whole reply generated, and the part that was heard
    # (whole sentences played before the barge-in; none if it came in the first sentence).
    assert len(first["spoken"]) < len(first["reply"]), first
    assert first["spoken"].split() == story_said.split(), (first["spoken"], story_said)
    assert first["reply"].startswith(first["spoken"].split(".")[0]), first
    assert "paris" in second["spoken"].lower(), second
    assert second["spoken"].split() == second["reply"].split(), second


def test_llm_down_apologizes_then_recovers(tmp_path, espeak_wav, transcribe):
    """One session: answered; the server is stopped -> the apology is heard; the server is
    started again on the same port -> the next question is answered again."""
    france = say(espeak_wav, tmp_path, FRANCE, "france")
    starts = [0.5, 13.0, 26.0]
    wav = compose(tmp_path / "in.wav", [(s, france) for s in starts],
                  total=starts[-1] + duration(france) + 9.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    port = free_port()
    server = LlamaServer(models.smollm2_gguf(), port=port, log_path=tmp_path / "llm1.log")
    server.start().wait_ready(120)
    app = subprocess.Popen(
        app_command(*_file_args(wav, out, timeline, server.base_url,
                                "--set", "llm.first_token_timeout=3")),
        env=app_env(), stdout=subprocess.DEVNULL, stderr=(tmp_path / "app.log").open("w"),
    )
    try:
        wait_for(timeline, app, lambda e: e["event"] == "bot_audio_stop", 60)
        server.stop()  # the LLM goes away between the first and the second question
        wait_for(timeline, app, lambda e: e["event"] == "apology", 60)
        server = LlamaServer(models.smollm2_gguf(), port=port, log_path=tmp_path / "llm2.log")
        server.start().wait_ready(120)  # ... and comes back before the third
        assert app.wait(timeout=120) == 0, (tmp_path / "app.log").read_text()[-4000:]
    finally:
        app.kill()
        server.stop()
    spoken = [t for t in turns(timeline) if t["text"]]
    assert len(spoken) == 3, f"turns: {turns(timeline)}"
    assert all("france" in t["text"].lower() for t in spoken), [t["text"] for t in spoken]
    assert [t["apology"] for t in spoken] == [False, True, False]
    assert spoken[1]["llm_error"]
    assert spoken[1]["spoken"].startswith("Sorry, I can't answer"), spoken[1]
    heard = [_heard(transcribe, out, t, tmp_path / f"reply{t['turn']}.wav") for t in spoken]
    assert "paris" in heard[0], heard
    assert "sorry" in heard[1], heard
    assert "paris" in heard[2], heard


def test_half_duplex_ignores_speech_while_the_bot_talks(tmp_path, smollm2_server, espeak_wav):
    """Open speakers without echo cancellation: the user is muted while the bot speaks, so
    speech over the bot neither interrupts it nor becomes a turn."""
    story = say(espeak_wav, tmp_path, "Please tell me a long story about a dragon", "story")
    france = say(espeak_wav, tmp_path, FRANCE, "france")
    q2_at = 0.5 + duration(story) + 9.0
    wav = compose(tmp_path / "in.wav", [(0.5, story), (q2_at, france)],
                  total=q2_at + duration(france) + 2.0)
    out, timeline = tmp_path / "out.wav", tmp_path / "timeline.jsonl"
    proc = run_app(*_file_args(wav, out, timeline, smollm2_server.base_url,
                               "--half-duplex", "--max-tokens", "100"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    spoken = [t for t in turns(timeline) if t["text"]]
    assert len(spoken) == 1, f"turns: {turns(timeline)}"
    (first,) = spoken
    assert "story" in first["text"].lower()
    assert not first["interrupted"]
    t0 = next(e["t"] for e in events(timeline) if e["event"] == "input_start")
    onset = t0 + q2_at  # the input file's clock placed on the app clock
    assert first["bot_audio_start"] < onset < first["bot_audio_stop"], first
    assert first["bot_audio_stop"] > onset + duration(france)  # talked straight through
