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
from pipecatapp.services.first_clause import (
    FirstClauseTextAggregator,
    WritingRate,
)

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


class Clock:
    """Time as the test sets it (the LLM's writing speed without waiting for it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _timed_pieces(aggregator, text: str, clock: Clock, words_per_sec: float) -> list[str]:
    """Feed ``text`` word by word at ``words_per_sec``; flush at the end."""
    out = []
    for word in text.split(" "):
        clock.now += 1 / words_per_sec
        out += [a.text async for a in aggregator.aggregate(word + " ")]
    rest = await aggregator.flush()
    return out + ([rest.text] if rest and rest.text else [])


def test_the_writing_rate_is_measured_per_reply():
    clock = Clock()
    rate = WritingRate(clock)
    assert rate.words_per_sec is None
    for _ in range(3):
        for _ in range(10):
            clock.now += 0.05
            rate.text("word ")
        rate.end_reply()
    assert rate.words_per_sec == pytest.approx(20.0)
    rate.text("Too short. ")  # under MIN_WORDS: not counted
    rate.end_reply()
    assert rate.words_per_sec == pytest.approx(20.0)


def test_a_reply_released_at_once_is_measured_from_where_it_streams():
    """A speculative answer held until the turn ended arrives in a burst and then streams:
    only the streaming part tells how fast the LLM writes; a reply all in one burst, nothing."""
    clock = Clock()
    rate = WritingRate(clock)
    for _ in range(12):  # 12 words released at once
        clock.now += 0.0001
        rate.text("held ")
    for _ in range(10):  # then the LLM's own pace: 20 words/s
        clock.now += 0.05
        rate.text("word ")
    rate.end_reply()
    assert rate.words_per_sec == pytest.approx(20.0)
    for _ in range(30):  # a whole reply at once
        clock.now += 0.0001
        rate.text("held ")
    rate.end_reply()
    assert rate.words_per_sec == pytest.approx(20.0)


LONG = "The brave young knight rode his old grey horse past three tall dark towers today. Bye. "


async def test_the_first_piece_adapts_to_how_fast_the_llm_writes():
    # Before any reply is measured the cut is max_words; then it is the words the LLM writes
    # in piece_secs: 8 words/s x 0.5 s = 4 words on a slow LLM, 40 x 0.5 = 20 on a fast one
    # (here the whole sentence goes, as it would without the rule).
    for words_per_sec, cut in ((8, "The brave young knight"), (40, LONG.split(". ")[0] + ".")):
        clock = Clock()
        aggregator = FirstClauseTextAggregator(min_words=4, max_words=8, piece_secs=0.5,
                                               rate=WritingRate(clock))
        first = await _timed_pieces(aggregator, LONG, clock, words_per_sec)
        assert first[0] == "The brave young knight rode his old grey"
        assert aggregator.max_words == round(words_per_sec * 0.5)
        second = await _timed_pieces(aggregator, LONG, clock, words_per_sec)
        assert second[0] == cut, second
        assert " ".join(second) == LONG.strip()


def test_the_app_adds_it_in_the_tuned_profile_only():
    tuned = AppConfig()
    processor = factory.build_first_clause(tuned, factory.build_tts(tuned))
    assert processor is not None
    assert (tuned.tts.first_clause_words, tuned.tts.first_piece_max_words,
            tuned.tts.first_piece_secs) == (4, 4, 0.1)
    stock = AppConfig(profile="stock")
    assert (stock.tts.first_clause_words, stock.tts.first_piece_max_words,
            stock.tts.first_piece_secs) == (0, 0, 0)
    assert factory.build_first_clause(stock, factory.build_tts(stock)) is None


def _reply_frames(text: str, step: int = 3) -> list:
    tokens = [LLMTextFrame(text[i:i + step]) for i in range(0, len(text), step)]
    return [LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()]


@pytest.mark.slow
async def test_the_tts_speaks_the_first_clause_on_its_own():
    """LLM text -> LLMTextProcessor(first-clause aggregator) -> real Piper: the clause is
    synthesized and spoken as a piece of its own, the rest by sentence, nothing lost."""
    # A word cut later than the comma, so the clause is what goes first.
    cfg = AppConfig(tts={"first_piece_max_words": 12, "first_piece_secs": 0})
    tts = factory.build_tts(cfg)
    processor = factory.build_first_clause(cfg, tts)
    assert processor is not None
    down, _ = await run_test(Pipeline([processor, tts]), frames_to_send=_reply_frames(REPLY))
    spoken = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert spoken == ["The largest planet in our solar system is Jupiter,",
                      "which is a gas giant.",
                      "It has many moons, including Ganymede."]
    # Each piece was synthesized on its own (Piper: one audio chunk or more per piece).
    assert sum(isinstance(f, TTSAudioRawFrame) for f in down) >= len(spoken)
