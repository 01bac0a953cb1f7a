"""Keeping a long session's memory flat: glibc's allocator, bounded.

The app's own objects stay flat over a long conversation (measured with
``devtools/memprobe.py``: Python-level memory and object counts level off after warm-up), but
the native engines (ctranslate2 for Whisper, onnxruntime for the VAD and Piper) allocate and
free large buffers on many threads every turn. glibc gives each thread that contends for the
heap its own arena (up to 8 per core) and keeps freed memory in them, so the resident size
creeps up and steps whenever a new arena is filled, with nothing in use behind it. Two bounds:

- ``limit_arenas``: at most ``ARENA_MAX`` arenas (``mallopt(M_ARENA_MAX)``, as the
  ``MALLOC_ARENA_MAX`` environment variable would, but set by the app itself before the
  engines start their threads);
- ``trim_when_idle``: while the conversation is idle, at most every ``TRIM_EVERY_SECS``,
  ``malloc_trim(0)`` hands freed pages back to the system (a few milliseconds).

Both do nothing where the C library is not glibc, or with ``PIPECATAPP_MALLOC_BOUNDS=off``
in the environment (to measure what they do: ``python -m bench --suite soak``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

ARENA_MAX = 2
TRIM_EVERY_SECS = 30.0
_M_ARENA_MAX = -8  # glibc malloc.h


def _glibc() -> ctypes.CDLL | None:
    if os.environ.get("PIPECATAPP_MALLOC_BOUNDS", "").lower() == "off":
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


_LIBC = _glibc()


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas (before threads start); False where this is not glibc."""
    return bool(_LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, arenas) == 1)


def rss_mb() -> float | None:
    """This process's resident size (VmRSS) in MB, None where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def trim() -> tuple[float, float] | None:
    """``malloc_trim(0)``: (MB the resident size fell by, seconds it took), None without
    glibc."""
    if _LIBC is None:
        return None
    before = rss_mb() or 0.0
    started = time.perf_counter()
    _LIBC.malloc_trim(0)
    took = time.perf_counter() - started
    return before - (rss_mb() or before), took


TRIM_LOG = "malloc_trim gave back"  # the soak bench reads these log lines


async def trim_when_idle(is_idle: Callable[[], bool], every: float = TRIM_EVERY_SECS) -> None:
    """Forever: every ``every`` seconds, if ``is_idle()``, trim in a worker thread and log
    what it gave back (INFO)."""
    if _LIBC is None:
        return
    while True:
        await asyncio.sleep(every)
        if not is_idle():
            continue
        result = await asyncio.to_thread(trim)
        if result is not None:
            logger.info(f"{TRIM_LOG} {result[0]:.1f} MB in {result[1] * 1000:.1f} ms")
