"""Starting the LLM on the pause's transcript (turn.speculate, pipecatapp/speculation.py).

Through pipecat's real user aggregator and the app's LLM service on a real llama-server: an
answer started on the eager transcript is held by the service's SpeculationGate and released
when the turn ends with the same words; otherwise it is withdrawn and never reaches the TTS.
Then the app end to end in file mode, on real speech, where Whisper's transcript of the pause
starts the answer and a user who goes on after the pause withdraws it. These tests also
catch a pipecat upgrade that changes the speculation API the strategy is built on.
"""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    EagerEndOfTurnCancelFrame,
    EagerTranscriptionFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import SleepFrame, run_test

from pipecatapp.config import load_config
from pipecatapp.errors import ConfigError
from pipecatapp.services.llm_openai import LocalOpenAILLMService
from pipecatapp.speculation import SpeculatingSentenceEndStrategy
from pipecatapp.turnstop import sentence_end_stop_strategies
from tests.app.voice import USER_RATE, USER_VOICE, compose, duration, events, run_app, say, turns
from tests.engines.audio_pipeline import Stamps, user_aggregator

QUESTION = "What is the capital of France?"


def _strategies(timeout: float = 5.0) -> tuple[list, SpeculatingSentenceEndStrategy]:
    stop = sentence_end_stop_strategies(user_speech_timeout=1.0, min_words=3, speculate=True)
    strategy = stop[-1]
    assert isinstance(strategy, SpeculatingSentenceEndStrategy)
    strategy._timeout = timeout
    return stop, strategy


def _turn(eager: str, committed: str, *, went_on: bool = False,
          think: float = 1.5) -> list[Frame]:
    """A user turn as the VAD and the STT report it: speech, an eager transcript in the
    pause (``think`` s before the VAD stop), optionally the STT withdrawing it because the
    user went on, then the VAD stop and the committed transcript."""
    frames: list[Frame] = [VADUserStartedSpeakingFrame(), SleepFrame(0.2),
                           EagerTranscriptionFrame(eager, "user", "now"), SleepFrame(think)]
    if went_on:
        frames += [EagerEndOfTurnCancelFrame(), SleepFrame(0.3)]
    return [*frames, VADUserStoppedSpeakingFrame(stop_secs=0.2), SleepFrame(0.05),
            TranscriptionFrame(committed, "user", "now", finalized=True), SleepFrame(2.5)]


async def _through_llm(server_url: str, frames: list[Frame], timeout: float = 5.0
                       ) -> tuple[Stamps, list[LLMContextFrame], SpeculatingSentenceEndStrategy]:
    """What passes the LLM (what the TTS would get), and the contexts the LLM was asked."""
    stop, strategy = _strategies(timeout)
    llm = LocalOpenAILLMService(base_url=server_url, api_key="", max_tokens=12,
                                temperature=0.0, system_prompt="Be brief.")
    asked, seen = Stamps(), Stamps()
    await run_test(Pipeline([user_aggregator(0.2, stop=stop), asked, llm, seen]),
                   frames_to_send=frames)
    return seen, [f for f in asked.of(LLMContextFrame) if isinstance(f, LLMContextFrame)], \
        strategy


def _user_messages(frame: Frame) -> list[str]:
    assert isinstance(frame, LLMContextFrame)
    return [m["content"] for m in frame.context.get_messages()
            if isinstance(m, dict) and m.get("role") == "user"]


@pytest.mark.slow
async def test_the_answer_started_in_the_pause_is_held_then_spoken_at_the_turn_end(
        smollm2_server):
    seen, asked, strategy = await _through_llm(smollm2_server.base_url,
                                               _turn(QUESTION, QUESTION))
    (turn_end,) = seen.at(UserStoppedSpeakingFrame)
    texts = seen.at(LLMTextFrame)
    assert texts, "no answer"
    assert min(texts) >= turn_end, "the speculative answer was spoken before the turn ended"
    # It was ready (generated in the pause) and is released at once, not asked again.
    assert min(texts) - turn_end < 0.05, f"first text {min(texts) - turn_end:.3f} s after"
    assert len(seen.at(LLMFullResponseStartFrame)) == 1
    assert (strategy.started, strategy.kept, strategy.withdrawn) == (1, 1, 0)
    assert [f.speculation for f in asked] == [True]
    assert "paris" in "".join(f.text for f in seen.of(LLMTextFrame)).lower()


@pytest.mark.slow
async def test_a_different_committed_transcript_withdraws_the_answer_and_asks_again(
        smollm2_server):
    committed = "What is the capital of Italy?"
    seen, asked, strategy = await _through_llm(smollm2_server.base_url,
                                               _turn(QUESTION, committed))
    (turn_end,) = seen.at(UserStoppedSpeakingFrame)
    (cancel,) = seen.at(EagerEndOfTurnCancelFrame)
    assert cancel < turn_end, "the withdrawal must reach the gate before the turn end"
    assert (strategy.kept, strategy.withdrawn) == (0, 1)
    # Only the answer to what was committed gets through, and it is asked with those words.
    assert len(seen.at(LLMFullResponseStartFrame)) == 1
    assert [f.speculation for f in asked] == [True, False]
    assert _user_messages(asked[1])[-1] == committed
    answer = "".join(f.text for f in seen.of(LLMTextFrame)).lower()
    assert answer and "paris" not in answer, answer  # nothing of the withdrawn answer


@pytest.mark.slow
async def test_going_on_after_the_pause_withdraws_the_answer(smollm2_server):
    committed = "What is the capital of France and of Italy?"
    seen, asked, strategy = await _through_llm(
        smollm2_server.base_url, _turn(QUESTION, committed, went_on=True, think=0.3))
    assert (strategy.kept, strategy.withdrawn) == (0, 1)
    (turn_end,) = seen.at(UserStoppedSpeakingFrame)
    assert min(seen.at(LLMTextFrame)) > turn_end
    assert len(seen.at(LLMFullResponseStartFrame)) == 1
    assert [f.speculation for f in asked] == [True, False]
    assert _user_messages(asked[1])[-1] == committed


async def test_only_a_finished_sentence_is_answered_early_and_an_unresolved_one_expires():
    stop, strategy = _strategies(timeout=0.3)
    seen = Stamps()
    frames = [VADUserStartedSpeakingFrame(), SleepFrame(0.1),
              EagerTranscriptionFrame("Tell me about", "user", "now"), SleepFrame(0.2),
              EagerTranscriptionFrame(QUESTION, "user", "now"), SleepFrame(0.6)]
    await run_test(Pipeline([user_aggregator(0.2, stop=stop), seen]), frames_to_send=frames)
    speculative = [f for f in seen.of(LLMContextFrame) if f.speculation]
    assert len(speculative) == 1 and _user_messages(speculative[0])[-1] == QUESTION
    assert (strategy.started, strategy.withdrawn) == (1, 1)  # expired after 0.3 s
    assert seen.of(EagerEndOfTurnCancelFrame)


async def test_a_turn_of_two_segments_is_matched_word_for_word():
    """ "Wait" (a segment of its own, which does not end the turn) and then "What is ...?":
    the answer started on the second segment's eager transcript answered "Wait What is
    ...?", which is what the turn committed."""
    stop, strategy = _strategies()
    seen = Stamps()
    frames = [VADUserStartedSpeakingFrame(), SleepFrame(0.2),
              VADUserStoppedSpeakingFrame(stop_secs=0.2), SleepFrame(0.05),
              TranscriptionFrame("Wait", "user", "now", finalized=True), SleepFrame(0.3),
              VADUserStartedSpeakingFrame(), SleepFrame(0.2),
              EagerTranscriptionFrame(QUESTION, "user", "now"), SleepFrame(0.2),
              VADUserStoppedSpeakingFrame(stop_secs=0.2), SleepFrame(0.05),
              TranscriptionFrame(QUESTION, "user", "now", finalized=True), SleepFrame(0.3)]
    await run_test(Pipeline([user_aggregator(0.2, stop=stop), seen]), frames_to_send=frames)
    (speculative,) = [f for f in seen.of(LLMContextFrame) if f.speculation]
    assert _user_messages(speculative)[-1] == f"Wait {QUESTION}"
    assert (strategy.started, strategy.kept, strategy.withdrawn) == (1, 1, 0)
    assert not [f for f in seen.of(LLMContextFrame) if not f.speculation]  # not asked twice


@pytest.mark.parametrize(("overrides", "needs"), [
    ({"turn.stop_strategy": "speech_timeout"}, "turn.stop_strategy sentence_end"),
    ({"stt.early_secs": "0"}, "stt.early_secs above 0"),
    ({"stt.engine": "realtimestt", "stt.early_secs": "0"},
     "stt.engine whisper and stt.early_secs above 0"),
])
def test_speculation_needs_the_sentence_end_and_whisper_in_the_pause(overrides, needs):
    assert load_config(environ={}, overrides={"turn.speculate": "true"}).turn.speculate
    with pytest.raises(ConfigError, match=r"^turn\.speculate: ") as err:
        load_config(environ={}, overrides={"turn.speculate": "true", **overrides})
    assert str(err.value).endswith(f"needs {needs}")
    assert load_config(environ={}, overrides={"profile": "stock"}).turn.speculate is False


@pytest.mark.slow
def test_the_app_answers_in_the_pause_and_withdraws_when_the_user_goes_on(
        tmp_path, smollm2_server, espeak_wav):
    """A VAD stop of 1.5 s leaves Whisper time to finish in the pause on any CPU: the first
    question is answered from the pause's transcript; in the second, the user goes on after
    a pause of 0.9 s ("... France? | And what ...") and the answer started in that pause is
    dropped."""
    first = say(espeak_wav, tmp_path, "How many days are in a week?", "q0")
    part = espeak_wav(QUESTION, tmp_path / "q1.wav", voice=USER_VOICE, rate=USER_RATE,
                      tail_silence=0.0)
    rest = espeak_wav("And what is the capital of Italy?", tmp_path / "q2.wav",
                      voice=USER_VOICE, rate=USER_RATE, lead_silence=0.0)
    second = 9.0
    wav = compose(tmp_path / "in.wav",
                  [(0.5, first), (second, part), (second + duration(part) + 0.9, rest)],
                  total=second + duration(part) + 0.9 + duration(rest) + 9.0)
    timeline = tmp_path / "timeline.jsonl"
    proc = run_app("-t", "file", "--input", str(wav), "--output", str(tmp_path / "out.wav"),
                   "--timeline", str(timeline), "--llm-url", smollm2_server.base_url,
                   "--set", "llm.temperature=0", "--set", "turn.speculate=true",
                   "--set", "vad.stop_secs=1.5", "--log-level", "INFO")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "speculative answer kept (1 kept" in proc.stderr, proc.stderr[-4000:]
    assert "speculative answer withdrawn, the user went on" in proc.stderr, proc.stderr[-4000:]
    answered = [t for t in turns(timeline) if t["text"]]
    assert len(answered) == 2, answered
    assert "week" in answered[0]["text"].lower()
    assert "italy" in answered[1]["text"].lower() and "france" in answered[1]["text"].lower()
    assert all(t.get("audio") for t in answered), answered
    # Nothing of the withdrawn answer was spoken: one reply started per answered turn.
    assert sum(e["event"] == "llm_start" for e in events(timeline)) == 2
