"""Speak the first piece of a reply as soon as it is ready, not the first sentence.

pipecat's TTS services cut LLM text into sentences and synthesize one at a time, so the bot's
first sound waits for the whole first sentence to be generated and then synthesized. SmolLM2's
first sentences are often long ("The largest planet in our solar system is Jupiter, which
...", 20-40 tokens): the voice benchmark measured 0.35-0.67 s from the first LLM token to the
first audio on such turns, against 0.10 s for a short one. Many have no comma at all ("The
answer to this question depends on the specific ...": 1.2 s to the first audio).

:class:`FirstClauseTextAggregator` is pipecat's sentence aggregator with rules added for the
first piece of a reply only. At the space after a word, the words so far are released:

- as a clause, if they end in ``,``, ``;`` or ``:`` and are at least ``min_words``;
- with ``max_words`` set: before a joining word ("and", "which", "because", "in", ...) once
  at least ``min_words`` precede it, so the piece ends where speech pauses anyway ("The
  ocean is a vast | and mysterious place"); the joining word starts the next piece;
- with ``max_words`` set: once there are ``max_words`` of them, after the first word that does
  not lean on the next one (not "the", "is", "of", "their", a number, ...): "The largest
  planet in our solar system is" waits for "Jupiter,". With ``piece_secs`` set, ``max_words``
  holds only until a reply has been measured: from then on it is as many words as the LLM
  writes in ``piece_secs`` (:class:`WritingRate`, the median of the last replies), so a slow
  LLM cuts sooner and a fast one lets the first sentence go whole.

Everything after the first piece is cut by sentence as before, so only the start of each reply
changes. The state resets at the end of each reply and on an interruption.

:func:`first_clause_processor` puts it between the LLM and the TTS the way pipecat provides
for: an ``LLMTextProcessor`` with this aggregator turns the LLM's text into
``AggregatedTextFrame`` pieces, which the TTS speaks as they come (it aggregates only raw
``LLMTextFrame`` text itself).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from loguru import logger
from pipecat.processors.aggregators.llm_text_processor import LLMTextProcessor
from pipecat.services.tts_service import TTSService
from pipecat.utils.string import SENTENCE_ENDING_PUNCTUATION
from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

CLAUSE_END = (",", ";", ":")
MAX_PIECE_WORDS = 50
# Words that start a clause or a phrase: a speaker pauses before them, so the first piece may
# end there. Left out on purpose: "to", "of", "as", "than" (bound to the word before them:
# "want to", "a lot of", "as well as").
JOINING_WORDS = frozenset({
    "and", "but", "or", "so", "because", "which", "who", "whose", "whom", "where", "when",
    "while", "if", "although", "though", "since", "until", "unless", "whereas", "that",
    "with", "without", "in", "on", "at", "for", "from", "by", "into", "about", "after",
    "before", "during", "through", "between", "like",
})
# Words that lean on the next one: a piece cut at max_words never ends on one of these (or on a
# joining word).
LEANING_WORDS = frozenset({
    "a", "an", "the", "to", "of", "as", "than", "not", "very", "more", "most", "is", "are",
    "was", "were", "be", "been", "am", "has", "have", "had", "do", "does", "did", "will",
    "would", "can", "could", "should", "may", "might", "must", "my", "your", "his", "her",
    "its", "our", "their", "this", "these", "those", "all", "some", "any", "every", "each",
    "no", "it's", "i'm", "there's", "due", "such", "both", "either", "neither", "i", "we",
    "you", "he", "she", "it", "they",
})


class WritingRate:
    """How many words a second the LLM writes, measured on its replies as they stream.

    ``text`` takes each piece of a reply as it arrives, ``end_reply`` closes the reply; a reply
    of at least ``MIN_WORDS`` words counts, and ``words_per_sec`` is the median of the last
    ``KEEP`` (None before the first).

    A reply that starts with pieces arriving at once (``BURST_SECS`` apart at most: a
    speculative answer held until the turn ended, see pipecatapp/speculation.py) is measured
    from the end of that burst: the burst says nothing of how fast the LLM writes, and
    counting it made the rate many times too high and the first piece a whole sentence.
    """

    MIN_WORDS = 6
    KEEP = 5
    BURST_SECS = 0.002

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rates: deque[float] = deque(maxlen=self.KEEP)
        self._in_word = False
        self._words = 0
        self._first_word_at = 0.0
        self._last_word_at = 0.0
        self._pieces = 0  # pieces of this reply so far
        self._last_piece_at = 0.0
        self._bursting = False  # the reply's pieces have all arrived at once so far

    def text(self, text: str) -> None:
        now = self._clock()
        if self._pieces == 0:
            self._bursting = True
        elif self._bursting and now - self._last_piece_at > self.BURST_SECS:
            self._bursting = False
            if self._pieces > 1:  # a burst, not one piece: measure from its end
                self._words = 0
        self._pieces += 1
        self._last_piece_at = now
        for char in text:
            if char.isspace():
                if self._in_word:
                    self._words += 1
                    if self._words == 1:
                        self._first_word_at = now
                    self._last_word_at = now
                self._in_word = False
            else:
                self._in_word = True

    def end_reply(self) -> None:
        span = self._last_word_at - self._first_word_at
        whole_burst = self._bursting and self._pieces > 1
        if self._words >= self.MIN_WORDS and span > 0 and not whole_burst:
            self._rates.append((self._words - 1) / span)
        self._in_word, self._words, self._pieces = False, 0, 0

    @property
    def words_per_sec(self) -> float | None:
        return statistics.median(self._rates) if self._rates else None


class FirstClauseTextAggregator(SimpleTextAggregator):
    """Sentence aggregation, except that a reply's first clause is released on its own.

    Built on SimpleTextAggregator's public methods only (``aggregate``, ``text``,
    ``reset``): the text is fed to it one character at a time, exactly as it cuts text
    itself, and a ready first clause is taken out of its buffer with ``reset``.
    """

    def __init__(
        self,
        *,
        min_words: int = 4,
        max_words: int = 0,
        piece_secs: float = 0.0,
        rate: WritingRate | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._fc_min_words = min_words
        self._fc_max_words = max_words
        self._fc_piece_secs = piece_secs
        self.rate = rate or WritingRate()
        self._fc_logged_max = max_words
        self._fc_first = True
        # A possible sentence end (".", "?", ";", ...) that pipecat has not decided on yet:
        # it decides once the word after it is complete. Until then no clause is released
        # ("Dr. Smith, ..." and "First; then" stay with the sentence logic).
        self._fc_open_end = False
        self._fc_word_after_end = False

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        if self.aggregation_type == TextType.TOKEN:
            async for aggregation in super().aggregate(text):
                yield aggregation
            return
        self.rate.text(text)
        for char in text:
            released = False
            async for aggregation in super().aggregate(char):
                released = True
                self._fc_first = False
                yield aggregation
            self._track_sentence_end(char, released)
            if not (self._fc_first and not released and char.isspace()):
                continue
            piece, rest = self._first_piece()
            if not piece:
                continue
            await super().reset()  # the buffer held exactly piece + rest
            self._fc_first = False
            yield Aggregation(text=piece, type=TextType.SENTENCE)
            async for aggregation in super().aggregate(rest):
                yield aggregation  # rest is one word: never a sentence end

    def _track_sentence_end(self, char: str, released: bool) -> None:
        if char in SENTENCE_ENDING_PUNCTUATION:
            self._fc_open_end, self._fc_word_after_end = True, False
        elif released:
            self._fc_open_end = False
        elif self._fc_open_end:
            if char.isalnum():
                self._fc_word_after_end = True
            elif char.isspace() and self._fc_word_after_end:
                self._fc_open_end = False

    def _first_piece(self) -> tuple[str, str]:
        """The first piece to release now and the text that stays buffered, or ("", "")."""
        if self._fc_open_end:
            return "", ""
        text = self.text.text.strip()
        words = text.split()
        if text.endswith(CLAUSE_END) and len(words) >= self._fc_min_words:
            return text, ""
        if not self._fc_max_words:
            return "", ""
        last = words[-1] if words else ""
        if len(words) > self._fc_min_words and last.lower() in JOINING_WORDS:
            return text[: -len(last)].rstrip(), last + " "
        if len(words) >= self.max_words and not _leans(last):
            return text, ""
        return "", ""

    @property
    def max_words(self) -> int:
        """The word count at which the first piece is cut (without a break before it)."""
        rate = self.rate.words_per_sec
        if not self._fc_piece_secs or rate is None:
            return self._fc_max_words
        return max(self._fc_min_words, min(MAX_PIECE_WORDS, round(rate * self._fc_piece_secs)))

    def _start_reply(self) -> None:
        self.rate.end_reply()
        if self._fc_piece_secs and self.max_words != self._fc_logged_max:
            self._fc_logged_max = self.max_words
            logger.info(f"first piece: cut at {self.max_words} words "
                        f"(the LLM writes {self.rate.words_per_sec:.0f} words/s)")
        self._fc_first = True
        self._fc_open_end = False
        self._fc_word_after_end = False

    async def flush(self) -> Aggregation | None:
        self._start_reply()
        return await super().flush()

    async def handle_interruption(self) -> None:
        self._start_reply()
        await super().handle_interruption()

    async def reset(self) -> None:
        self._start_reply()
        await super().reset()


def _leans(word: str) -> bool:
    """Whether ``word`` leans on the next one: a function word, a number ("720 days"), a
    possessive ("the spider's body") or an open bracket or quote."""
    word = word.lower()
    return (word in LEANING_WORDS or word in JOINING_WORDS or word.endswith(("'s", "\u2019s"))
            or any(c.isdigit() for c in word) or word[0] in "([\"'\u201c\u2018")


def first_clause_processor(
    tts: TTSService, min_words: int, max_words: int = 0, piece_secs: float = 0.0
) -> LLMTextProcessor | None:
    """The processor to place between the LLM and ``tts`` so that each reply's first piece
    is spoken on its own (``min_words`` 0: None, the TTS cuts sentences itself)."""
    if min_words <= 0:
        return None
    return LLMTextProcessor(
        text_aggregator=FirstClauseTextAggregator(
            min_words=min_words, max_words=max_words, piece_secs=piece_secs,
            language=tts.text_aggregation_language,
        )
    )
