"""Comparing what Whisper heard with what was said.

Whisper's greedy decoding of espeak-ng speech is not bit-identical across CPUs: CTranslate2's
int8 kernels differ by instruction set and BLAS backend, and one CI machine heard "What is the
capital of France?" as "what is a capital on france" where this machine hears it exactly. So
tests compare by word edit distance and by the content words a later stage depends on, never
by exact string.
"""

from __future__ import annotations


def words(text: str) -> list[str]:
    """Lower-case words of ``text``, punctuation dropped (Whisper's casing and commas vary)."""
    cleaned = "".join(c.lower() if c.isalnum() or c in "' " else " " for c in text)
    return cleaned.split()


def word_errors(heard: str, expected: str) -> int:
    """Word-level edit distance (substitutions, insertions, deletions) between two texts."""
    a, b = words(heard), words(expected)
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def close_enough(heard: str, expected: str, *, max_errors: int = 2) -> bool:
    """Whisper base on espeak-ng speech: at most ``max_errors`` words off (function words such
    as "the"/"a" and "of"/"on" are where greedy decoding drifts between machines)."""
    return word_errors(heard, expected) <= max_errors
