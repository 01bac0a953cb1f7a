"""CI's short soak: ``python -m bench --suite soak --smoke``, 20 user turns in one session
through the file transport (questions, barge-ins, not-understood utterances, silences, noise
bursts) against SmolLM2 on a real llama-server, in real time (about 5 minutes).

Checked: every user turn got a record and a reaction within 10 s (no stuck turn), the LLM
context stayed bounded, and the table and the plot came out. The RSS and latency targets
need the full 200-turn run (docs/benchmarks.md): 20 turns are mostly warm-up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipecatapp.config import LLMConfig

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def _cell(markdown: str, metric: str) -> str:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == metric:
            return cells[1]
    raise AssertionError(f"no row {metric!r} in:\n{markdown}")


def test_short_soak(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--suite", "soak", "--smoke",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = (tmp_path / "results.md").read_text()
    assert "### Soak: 20 user turns in one session" in results, results
    assert int(_cell(results, "turn records")) >= 20, results
    assert _cell(results, "stuck turns (no reaction within 10 s)") == "0", results
    most = int(re.match(r"(\d+)", _cell(results, "LLM context: max / last messages")).group(1))
    assert most <= LLMConfig().max_history + 2, results
    assert re.fullmatch(r"[+-]\d+\.\d MB", _cell(results, "RSS growth after warm-up")), results
    assert (tmp_path / "soak.png").read_bytes()[:8] == PNG
