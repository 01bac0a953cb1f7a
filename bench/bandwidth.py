"""This machine's memory bandwidth (read and copy), with 1 and N threads, using numpy.

numpy releases the GIL in ``sum`` and ``copyto``, so N Python threads each working on their
own slice measure N-core bandwidth. Arrays are far larger than any CPU cache.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class Bandwidth:
    threads: int
    read_gbs: float  # best of the repeats, GB/s (1e9 bytes)
    copy_gbs: float  # bytes read + bytes written per second


def _timed(fn: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def measure(threads: int = 1, mib: int = 256, repeats: int = 5) -> Bandwidth:
    n = mib * 1024 * 1024 // 8
    src = np.ones(n, dtype=np.int64)
    dst = np.empty_like(src)
    chunks = np.array_split(np.arange(n), threads)
    bounds = [(int(c[0]), int(c[-1]) + 1) for c in chunks]
    with ThreadPoolExecutor(threads) as pool:
        def read() -> None:
            list(pool.map(lambda b: int(src[b[0]:b[1]].sum()), bounds))

        def copy() -> None:
            list(pool.map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds))

        read()
        copy()  # touch every page before timing
        t_read = _timed(read, repeats)
        t_copy = _timed(copy, repeats)
    nbytes = src.nbytes
    return Bandwidth(threads, nbytes / t_read / 1e9, 2 * nbytes / t_copy / 1e9)
