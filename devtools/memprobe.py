"""Memory probe for long sessions: ``python -m devtools.memprobe OUT.jsonl -- <pipecatapp
arguments>`` runs ``python -m pipecatapp`` in this process with a sampler thread that writes
one JSON line every ``MEMPROBE_SECS`` seconds (default 30):

- ``rss_mb``: VmRSS; ``py_mb``: what Python's allocators hold (tracemalloc, if
  ``MEMPROBE_TRACE=1``); ``malloc``: glibc ``mallinfo2`` (``arena`` = sbrk heap,
  ``hblkhd`` = mmapped blocks, ``uordblks`` = in use, ``fordblks`` = free but kept);
- ``objects``: live objects tracked by the gc, and the types whose count grew the most since
  the first sample after warm-up;
- ``top``: with tracemalloc, the source lines whose allocations grew the most since then.

``MEMPROBE_TRIM=1`` calls ``malloc_trim(0)`` before each sample and records what it gave
back. A diagnostic tool for the soak (bench/soak.py, ``SOAK_MEMPROBE=1``), not part of the
app.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2
_LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
MB = 1024 * 1024


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _malloc() -> dict[str, float]:
    info = _LIBC.mallinfo2()
    return {name: round(getattr(info, name) / MB, 1)
            for name in ("arena", "hblkhd", "uordblks", "fordblks")}


def _types() -> Counter[str]:
    return Counter(type(o).__name__ for o in gc.get_objects())


def _sampler(out: Path, every: float, warmup: float, trace: bool, trim: bool) -> None:
    started = time.monotonic()
    base_types: Counter[str] | None = None
    base_snap: tracemalloc.Snapshot | None = None
    with out.open("w") as f:
        while True:
            time.sleep(every)
            now = time.monotonic() - started
            row: dict[str, Any] = {"t": round(now, 1)}
            if trim:
                before = _rss_mb()
                _LIBC.malloc_trim(0)
                row["trimmed_mb"] = round(before - _rss_mb(), 1)
            row["rss_mb"] = round(_rss_mb(), 1)
            row["malloc"] = _malloc()
            row["gc_counts"] = gc.get_count()
            types = _types()
            row["objects"] = sum(types.values())
            if now >= warmup and base_types is None:
                base_types = types
            if base_types is not None:
                grown = (types - base_types).most_common(8)
                row["grown_types"] = grown
            if trace:
                current, _peak = tracemalloc.get_traced_memory()
                row["tracemalloc_self_mb"] = round(tracemalloc.get_tracemalloc_memory() / MB, 1)
                row["py_mb"] = round(current / MB, 1)
                if now >= warmup:
                    snap = tracemalloc.take_snapshot()
                    if base_snap is None:
                        base_snap = snap
                    else:
                        stats = snap.compare_to(base_snap, "lineno")[:8]
                        row["top"] = [f"{s.traceback[0].filename}:{s.traceback[0].lineno} "
                                      f"{s.size_diff / 1024:+.0f} KiB {s.count_diff:+d}"
                                      for s in stats]
            f.write(json.dumps(row) + "\n")
            f.flush()


def main() -> None:
    out = Path(sys.argv[1])
    args = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    trace = os.environ.get("MEMPROBE_TRACE") == "1"
    if trace:
        tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", "1")))
    thread = threading.Thread(
        target=_sampler, daemon=True,
        args=(out, float(os.environ.get("MEMPROBE_SECS", "30")),
              float(os.environ.get("MEMPROBE_WARMUP", "120")), trace,
              os.environ.get("MEMPROBE_TRIM") == "1"))
    thread.start()
    sys.argv = ["pipecatapp", *args]
    runpy.run_module("pipecatapp", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
