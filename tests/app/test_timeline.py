"""Timeline: turn summaries (voice-to-voice, barge-in), no-audio turns are logged, JSONL."""

from __future__ import annotations

import json

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipecatapp.timeline import AppClock, Timeline, read_timeline


def _turn(tl: Timeline, start: float, stop: float, text: str, answer: str | None) -> None:
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), start + 0.1)
    tl.on_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2), stop + 0.2)
    tl.on_frame(TranscriptionFrame(text, "user", "now", finalized=True), stop + 0.6)
    tl.on_frame(LLMFullResponseStartFrame(), stop + 0.61)
    if answer is not None:
        tl.on_frame(LLMTextFrame(answer), stop + 0.7)
        tl.on_frame(TTSAudioRawFrame(b"\x00\x01" * 10, 24000, 1), stop + 0.8)
    tl.on_frame(LLMFullResponseEndFrame(), stop + 0.75)


def test_turns_voice_to_voice_and_barge_in(tmp_path):
    path = tmp_path / "timeline.jsonl"
    tl = Timeline(AppClock(), path)
    tl.audio_from_frames = False
    # Ground truth from the input file: two utterances.
    tl.input_speech(1.0, 2.5)
    tl.input_speech(6.0, 7.5)
    _turn(tl, 1.02, 2.48, "Tell me a story.", "Once upon a time")
    tl.bot_audio_started(3.3)
    # Barge-in: the second utterance starts at 6.0 while the bot talks.
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), 6.15)
    tl.on_frame(InterruptionFrame(), 6.15)
    tl.bot_audio_stopped(6.19)
    tl.on_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2), 7.7)
    tl.on_frame(TranscriptionFrame("What is the capital of France?", "u", "now"), 8.1)
    tl.on_frame(LLMFullResponseStartFrame(), 8.11)
    tl.on_frame(LLMTextFrame("Paris."), 8.2)
    tl.on_frame(LLMFullResponseEndFrame(), 8.25)
    tl.bot_audio_started(8.6)
    tl.bot_audio_stopped(9.6)
    tl.close()

    lines = read_timeline(path)
    turns = [e for e in lines if e["event"] == "turn"]
    assert [t["turn"] for t in turns] == [1, 2]
    first, second = turns
    assert first["text"] == "Tell me a story."
    assert first["user_speech_stop"] == 2.5  # ground truth, not the VAD's estimate
    assert first["voice_to_voice"] == 0.8
    assert first["interrupted"] is True
    assert first["barge_in_onset"] == 6.0
    assert abs(first["barge_in_latency"] - 0.19) < 1e-6
    assert second["text"] == "What is the capital of France?"
    assert second["user_speech_start"] == 6.0
    assert abs(second["voice_to_voice"] - 1.1) < 1e-6
    assert second["interrupted"] is False
    assert all("t" in e and "event" in e for e in lines)


def test_turn_without_audio_is_logged_not_dropped(tmp_path):
    tl = Timeline(AppClock(), tmp_path / "t.jsonl")
    tl.audio_from_frames = False
    _turn(tl, 1.0, 2.0, "Say nothing.", answer=None)
    tl.llm_failed("APIConnectionError: Connection error. api_key=sk-abcdef123456")
    tl.close()
    (turn,) = tl.turn_summaries()
    assert turn["audio"] is False
    assert turn["voice_to_voice"] is None
    assert turn["no_audio_reason"].startswith("APIConnectionError")
    assert "sk-abcdef123456" not in json.dumps(tl.events)


def test_idle_waits_for_an_answer():
    tl = Timeline(AppClock())
    assert not tl.awaiting_answer()
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), tl.clock.now())
    assert tl.awaiting_answer()
    tl.apology()
    assert not tl.awaiting_answer()


async def test_half_duplex_gate_silences_the_microphone_while_the_bot_speaks():
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        InputAudioRawFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.tests.utils import run_test

    from pipecatapp.halfduplex import HalfDuplexGate

    loud = b"\x10\x27" * 320
    gate = HalfDuplexGate(tail_secs=0.0)
    await run_test(gate, frames_to_send=[BotStartedSpeakingFrame()],
                   frames_to_send_direction=FrameDirection.UPSTREAM)
    assert gate.muted
    down, _ = await run_test(gate, frames_to_send=[InputAudioRawFrame(loud, 16000, 1)])
    assert [f.audio for f in down if isinstance(f, InputAudioRawFrame)] == [bytes(len(loud))]
    await run_test(gate, frames_to_send=[BotStoppedSpeakingFrame()],
                   frames_to_send_direction=FrameDirection.UPSTREAM)
    assert not gate.muted
    down, _ = await run_test(gate, frames_to_send=[InputAudioRawFrame(loud, 16000, 1)])
    assert [f.audio for f in down if isinstance(f, InputAudioRawFrame)] == [loud]


def test_turn_records_the_reply_and_what_was_spoken(tmp_path):
    """``reply`` is what the LLM generated, ``spoken`` what the output played: after a
    barge-in only the sentences played before it."""
    tl = Timeline(AppClock(), tmp_path / "t.jsonl")
    tl.audio_from_frames = False
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), 1.1)
    tl.on_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2), 2.7)
    tl.on_frame(TranscriptionFrame("Tell me a story.", "user", "now"), 3.0)
    tl.on_frame(LLMFullResponseStartFrame(), 3.01)
    for piece in ("Once upon a time", " there was a dragon.", " It flew far away."):
        tl.on_frame(LLMTextFrame(piece), 3.1)
    tl.on_frame(LLMFullResponseEndFrame(), 3.2)
    tl.bot_audio_started(3.5)
    tl.spoken_text("Once upon a time there was a dragon.", 5.0)
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), 5.5)
    tl.on_frame(InterruptionFrame(), 5.5)
    tl.bot_audio_stopped(5.6)
    tl.on_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2), 6.5)
    tl.on_frame(TranscriptionFrame("What is two plus two?", "user", "now"), 6.8)
    tl.on_frame(LLMFullResponseStartFrame(), 6.81)
    tl.on_frame(LLMTextFrame("Four."), 6.9)
    tl.on_frame(LLMFullResponseEndFrame(), 6.95)
    tl.bot_audio_started(7.2)
    tl.spoken_text("Four.", 7.6)
    tl.bot_audio_stopped(7.8)
    tl.close()
    first, second = tl.turn_summaries()
    assert first["reply"] == "Once upon a time there was a dragon. It flew far away."
    assert first["spoken"] == "Once upon a time there was a dragon."
    assert first["interrupted"] is True
    assert second["reply"] == second["spoken"] == "Four."
    assert [e["text"] for e in tl.events if e["event"] == "bot_spoken"] == [
        "Once upon a time there was a dragon.", "Four."]


def test_not_understood_turn_and_noise(tmp_path):
    """A turn not understood is recorded with its reason and closed (the next utterance is a
    new turn); a noise verdict writes a noise event, not a turn."""
    from pipecatapp.not_understood import SpeechNotUnderstoodFrame

    tl = Timeline(AppClock(), tmp_path / "t.jsonl")
    tl.audio_from_frames = False
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), 1.1)
    tl.on_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2), 3.2)
    tl.on_frame(SpeechNotUnderstoodFrame(reason="low_confidence", text="Smelph now"), 3.5)
    tl.not_understood_reply("low_confidence", True)
    tl.bot_audio_started(3.6)
    tl.spoken_text("Sorry, I didn't catch that.", 4.8)
    tl.bot_audio_stopped(5.0)
    tl.on_frame(VADUserStartedSpeakingFrame(start_secs=0.064), 6.1)
    tl.on_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2), 6.5)
    tl.on_frame(SpeechNotUnderstoodFrame(reason="noise", text="you"), 6.8)
    tl.close()
    (turn,) = tl.turn_summaries()
    assert turn["not_understood"] == "low_confidence" and turn["heard"] == "Smelph now"
    assert turn["spoken"] == "Sorry, I didn't catch that." and turn["text"] == ""
    assert abs(turn["voice_to_voice"] - 0.6) < 1e-6  # speech ended at 3.2 - 0.2
    (noise,) = [e for e in tl.events if e["event"] == "noise"]
    assert noise["heard"] == "you" and noise["turn"] == 2
