"""The first-clause aggregator: pipecat's sentence aggregator, real, with one rule added."""

from __future__ import annotations

from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from pipecatapp.config import AppConfig
from pipecatapp.services import factory
from pipecatapp.services.first_clause import FirstClauseTextAggregator

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


def test_the_app_installs_it_in_the_tuned_profile_only():
    tuned = factory.build_tts(AppConfig())
    assert isinstance(tuned._text_aggregator, FirstClauseTextAggregator)
    stock = AppConfig(profile="stock")
    stock.tts.first_clause_words = 0
    assert not isinstance(factory.build_tts(stock)._text_aggregator, FirstClauseTextAggregator)
