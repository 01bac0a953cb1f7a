"""The allocator bounds of a long session (pipecatapp/memory.py), on this machine's glibc:
the arena cap is accepted, ``malloc_trim`` hands freed heap pages back, and the idle trimmer
trims only while the conversation is idle."""

from __future__ import annotations

import asyncio
import ctypes

import pytest

from pipecatapp import memory

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="needs glibc")


def test_arena_cap_is_accepted() -> None:
    assert memory.limit_arenas(memory.ARENA_MAX)


def test_trim_gives_freed_pages_back() -> None:
    libc = memory._LIBC
    assert libc is not None
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(800)]  # 50 MB, under the mmap threshold
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)  # touch them: resident
    for b in blocks[:-1]:
        libc.free(b)  # freed, but glibc keeps the pages (the last block pins the top)
    result = memory.trim()
    libc.free(blocks[-1])
    assert result is not None
    freed, secs = result
    assert freed >= 30.0, f"malloc_trim gave back only {freed:.1f} MB"
    assert secs < 1.0


def test_trimmer_waits_for_idle(caplog: pytest.LogCaptureFixture) -> None:
    idle = {"now": False}
    calls: list[bool] = []

    def is_idle() -> bool:
        calls.append(idle["now"])
        return idle["now"]

    async def run() -> None:
        task = asyncio.create_task(memory.trim_when_idle(is_idle, every=0.05))
        await asyncio.sleep(0.2)
        idle["now"] = True
        await asyncio.sleep(0.2)
        task.cancel()

    lines: list[str] = []
    sink = memory.logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        asyncio.run(run())
    finally:
        memory.logger.remove(sink)
    assert False in calls and True in calls
    assert any(memory.TRIM_LOG in line for line in lines), lines
    assert len([line for line in lines if memory.TRIM_LOG in line]) <= calls.count(True)
