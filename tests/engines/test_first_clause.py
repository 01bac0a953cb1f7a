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


def test_the_app_adds_it_in_the_tuned_profile_only():
    tuned = AppConfig()
    processor = first_clause_processor(factory.build_tts(tuned), tuned.tts.first_clause_words)
    assert processor is not None
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
    processor = first_clause_processor(tts, cfg.tts.first_clause_words)
    assert processor is not None
    down, _ = await run_test(Pipeline([processor, tts]), frames_to_send=_reply_frames(REPLY))
    spoken = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert spoken == ["The largest planet in our solar system is Jupiter,",
                      "which is a gas giant.",
                      "It has many moons, including Ganymede."]
    # Each piece was synthesized on its own (Piper: one audio chunk or more per piece).
    assert sum(isinstance(f, TTSAudioRawFrame) for f in down) >= len(spoken)
