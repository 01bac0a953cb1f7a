"""Comparing what Whisper heard with what was said.

Whisper's greedy decoding of espeak-ng speech is not bit-identical across CPUs: CTranslate2's
int8 kernels differ by instruction set and BLAS backend, and one CI machine heard "What is the
capital of France?" as "what is a capital on france" where this machine hears it exactly. So
tests compare by word edit distance and by the content words a later stage depends on, never
by exact string.
"""

from __future__ import annotations

from devtools.utterances import word_errors, words

__all__ = ["close_enough", "word_errors", "words"]


def close_enough(heard: str, expected: str, *, max_errors: int = 2) -> bool:
    """Whisper base on espeak-ng speech: at most ``max_errors`` words off (function words such
    as "the"/"a" and "of"/"on" are where greedy decoding drifts between machines)."""
    return word_errors(heard, expected) <= max_errors
