"""Speak the first clause of a reply as soon as it is complete, not the first sentence.

pipecat's TTS services cut LLM text into sentences and synthesize one at a time, so the bot's
first sound waits for the whole first sentence to be generated and then synthesized. SmolLM2's
first sentences are often long ("The largest planet in our solar system is Jupiter, which
...", 20-40 tokens): the voice benchmark measured 0.35-0.67 s from the first LLM token to the
first audio on such turns, against 0.10 s for a short one.

:class:`FirstClauseTextAggregator` is pipecat's sentence aggregator with one rule added: until
it has released the first piece of a reply, a clause that ends in ``,``, ``;`` or ``:`` and has
at least ``min_words`` words is released at the space after it. Everything after the first
piece is cut by sentence as before, so only the start of each reply changes. The state resets
at the end of each reply and on an interruption.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator, _LookaheadState

CLAUSE_END = (",", ";", ":")


class FirstClauseTextAggregator(SimpleTextAggregator):
    """Sentence aggregation, except that a reply's first clause is released on its own."""

    def __init__(self, *, min_words: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min_words = min_words
        self._first = True

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        if self._aggregation_type == TextType.TOKEN:
            async for aggregation in super().aggregate(text):
                yield aggregation
            return
        for char in text:
            self._text += char
            result = await self._check_sentence_with_lookahead(char)
            if result:
                self._first = False
                yield result
            elif self._first and char.isspace() and self._clause_is_ready():
                clause = self._text.strip()
                self._text = ""
                self._first = False
                yield Aggregation(text=clause, type=TextType.SENTENCE)

    def _clause_is_ready(self) -> bool:
        # Only outside a pending sentence-boundary check ("Dr. Smith, ..." stays whole).
        if self._lookahead_state != _LookaheadState.IDLE:
            return False
        clause = self._text.rstrip()
        return clause.endswith(CLAUSE_END) and len(clause.split()) >= self._min_words

    async def flush(self) -> Aggregation | None:
        self._first = True
        return await super().flush()

    async def handle_interruption(self) -> None:
        self._first = True
        await super().handle_interruption()

    async def reset(self) -> None:
        self._first = True
        await super().reset()


def speak_first_clause(tts: Any, min_words: int) -> None:
    """Give a pipecat TTS service the first-clause aggregator (``min_words`` 0: leave it).

    pipecat 1.14's TTSService takes no aggregator argument (only a mode), so the one it built
    is replaced, keeping its mode and language.
    """
    if min_words <= 0:
        return
    current = tts._text_aggregator
    tts._text_aggregator = FirstClauseTextAggregator(
        min_words=min_words,
        aggregation_type=current.aggregation_type,
        language=current.language,
    )
