"""The first-clause aggregator: pipecat's sentence aggregator, real, with one rule added; and
the real Piper TTS speaking its pieces when it sits in pipecat's LLMTextProcessor."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import run_test
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from pipecatapp.config import AppConfig
from pipecatapp.services import factory
from pipecatapp.services.first_clause import FirstClauseTextAggregator, first_clause_processor

REPLY = ("The largest planet in our solar system is Jupiter, which is a gas giant. "
         "It has many moons, including Ganymede. ")


async def _pieces(aggregator, text: str, step: int = 3) -> list[str]:
    """Feed ``text`` a few characters at a time, as LLM tokens arrive; flush at the end."""
    out = []
    for i in range(0, len(text), step):
        out += [a.text async for a in aggregator.aggregate(text[i:i + step])]
    rest = await aggregator.flush()
    return out + ([rest.text] if rest and rest.text else [])


async def test_the_first_clause_goes_alone_then_sentences():
    pieces = await _pieces(FirstClauseTextAggregator(min_words=4), REPLY)
    assert pieces == ["The largest planet in our solar system is Jupiter,",
                      "which is a gas giant.",
                      "It has many moons, including Ganymede."]


async def test_stock_aggregation_waits_for_the_sentence():
    pieces = await _pieces(SimpleTextAggregator(), REPLY)
    assert pieces[0] == "The largest planet in our solar system is Jupiter, which is a gas giant."


async def test_a_short_clause_is_not_cut_and_every_reply_starts_afresh():
    aggregator = FirstClauseTextAggregator(min_words=4)
    assert (await _pieces(aggregator, "Yes, it is. Paris is big. "))[0] == "Yes, it is."
    # The next reply (after flush) gets its own first clause.
    assert (await _pieces(aggregator, "Well, that is a good question, really. "))[0] \
        == "Well, that is a good question,"


async def test_an_interruption_starts_a_new_reply():
    aggregator = FirstClauseTextAggregator(min_words=4)
    [a async for a in aggregator.aggregate("Once upon a time, in a land")]
    await aggregator.handle_interruption()
    assert (await _pieces(aggregator, "Two plus two is four, of course. "))[0] \
        == "Two plus two is four,"


async def test_a_pending_sentence_end_keeps_the_clause_with_the_sentence_logic():
    # ";" may end a sentence: pipecat decides once the next word is complete (here: it does
    # not), and the first-clause rule does not pre-empt it. An abbreviation before a comma
    # is resolved by then, so that clause goes alone.
    aggregator = FirstClauseTextAggregator(min_words=1)
    assert (await _pieces(aggregator, "First; then the rest. "))[0] == "First; then the rest."
    assert (await _pieces(aggregator, "Dr. Smith, the surgeon, is here. "))[0] == "Dr. Smith,"


async def test_without_a_comma_the_first_piece_ends_before_a_joining_word():
    aggregator = FirstClauseTextAggregator(min_words=4, max_words=8)
    text = ("The answer to this question depends on the specific case. "
            "It is hard to say. ")
    # "to" and "on" do not count before 4 words ("The answer | to" would be too short);
    # "to" is never a joining word. The joining word opens the next piece.
    assert await _pieces(aggregator, text) == [
        "The answer to this question depends",
        "on the specific case.",
        "It is hard to say.",
    ]


async def test_a_long_first_piece_without_a_break_is_cut_after_max_words():
    aggregator = FirstClauseTextAggregator(min_words=4, max_words=8)
    text = "I am afraid I do not have all those stories right now. Sorry. "
    # Eight words end on "all", which leans on what follows, and so does "those".
    assert await _pieces(aggregator, text) == [
        "I am afraid I do not have all those stories",
        "right now.",
        "Sorry.",
    ]


async def test_a_comma_that_follows_soon_after_max_words_still_wins():
    # Eight words end on "is": the piece waits for "Jupiter," and is the clause.
    pieces = await _pieces(FirstClauseTextAggregator(min_words=4, max_words=8), REPLY)
    assert pieces[0] == "The largest planet in our solar system is Jupiter,"


async def test_the_cut_never_pre_empts_an_undecided_sentence_end_or_a_short_sentence():
    aggregator = FirstClauseTextAggregator(min_words=2, max_words=3)
    # "Mr." may end a sentence: nothing is released until pipecat has decided that it
    # does not, then the piece is cut at three words.
    assert (await _pieces(aggregator, "Ask Mr. Smith about it. "))[0] == "Ask Mr. Smith"
    # A sentence shorter than the cut goes whole, as before.
    aggregator = FirstClauseTextAggregator(min_words=4, max_words=8)
    assert await _pieces(aggregator, "The capital of France is Paris. ") == [
        "The capital of France is Paris."]


async def test_without_max_words_only_a_clause_is_cut():
    aggregator = FirstClauseTextAggregator(min_words=4)
    text = "The answer to this question depends on the specific case. "
    assert await _pieces(aggregator, text) == [text.strip()]


def test_the_app_adds_it_in_the_tuned_profile_only():
    tuned = AppConfig()
    processor = first_clause_processor(factory.build_tts(tuned), tuned.tts.first_clause_words)
    assert processor is not None
    assert (tuned.tts.first_clause_words, tuned.tts.first_piece_max_words) == (4, 8)
    assert AppConfig(profile="stock").tts.first_piece_max_words == 0
    stock = AppConfig(profile="stock")
    stock.tts.first_clause_words = 0  # what the stock profile sets
    assert first_clause_processor(factory.build_tts(stock), stock.tts.first_clause_words) is None


def _reply_frames(text: str, step: int = 3) -> list:
    tokens = [LLMTextFrame(text[i:i + step]) for i in range(0, len(text), step)]
    return [LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()]


@pytest.mark.slow
async def test_the_tts_speaks_the_first_clause_on_its_own():
    """LLM text -> LLMTextProcessor(first-clause aggregator) -> real Piper: the clause is
    synthesized and spoken as a piece of its own, the rest by sentence, nothing lost."""
    cfg = AppConfig()
    tts = factory.build_tts(cfg)
    processor = first_clause_processor(
        tts, cfg.tts.first_clause_words, cfg.tts.first_piece_max_words)
    assert processor is not None
    down, _ = await run_test(Pipeline([processor, tts]), frames_to_send=_reply_frames(REPLY))
    spoken = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert spoken == ["The largest planet in our solar system is Jupiter,",
                      "which is a gas giant.",
                      "It has many moons, including Ganymede."]
    # Each piece was synthesized on its own (Piper: one audio chunk or more per piece).
    assert sum(isinstance(f, TTSAudioRawFrame) for f in down) >= len(spoken)
