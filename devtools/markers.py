"""Generated blocks in hand-written files: the text between two marker lines."""

from __future__ import annotations

from pathlib import Path


def replace_between(text: str, begin: str, end: str, body: str, path: Path,
                    error: type[Exception]) -> str:
    """``text`` with what lies between the ``begin`` and ``end`` lines replaced by ``body``;
    ``error`` (naming ``path``) when the markers are not there once each, in that order."""
    once = text.count(begin) == 1 and text.count(end) == 1
    if not once or text.index(begin) > text.index(end):
        raise error(f"{path}: needs the marker lines, once each, in this order:\n{begin}\n{end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"
