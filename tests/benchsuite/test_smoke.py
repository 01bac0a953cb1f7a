"""CI's smoke pass of the benchmark: ``python -m bench --smoke`` with the tiny model (real
llama-server, real Whisper/Piper in the voice suite). Checks that every table and plot is
produced and carries numbers; the figures themselves are not asserted (not a timed test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipecatapp.embedded.server import batch_threads

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _bench(out: Path, *args: str, timeout: float) -> str:
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _rows(markdown: str, title: str) -> list[list[str]]:
    section = markdown.split(f"### {title}", 1)[1].split("###", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def _number(cell: str) -> float:
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)x?", cell)
    assert match, f"not a number: {cell!r}"
    return float(match.group(1))


def test_llm_smoke(tmp_path: Path) -> None:
    stdout = _bench(tmp_path, "--suite", "llm", timeout=300)
    results = (tmp_path / "results.md").read_text()
    assert "Machine:" in results and stdout.strip()
    rows = _rows(results, "LLM: tiny.gguf")
    engines = {r[0] for r in rows}
    assert {"llama-server, 1 thread", "llama.cpp RPC (loopback), 1 thread"} <= engines
    for row in rows:
        assert _number(row[1]) > 0 and _number(row[2]) > 0 and _number(row[3]) > 0
    ceiling = _rows(results, "LLM: memory-bandwidth ceiling for decode")
    assert _number(ceiling[0][1]) > 0.1  # GB/s
    assert _number(ceiling[0][6]) > 0
    for name in ("llm_ttft.png", "llm_decode.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_tuning_smoke(tmp_path: Path) -> None:
    _bench(tmp_path, "--suite", "tuning", timeout=400)
    results = (tmp_path / "results.md").read_text()
    rows = _rows(results, "LLM tuning: tiny.gguf")
    assert rows[0][0].startswith("baseline") and len(rows) >= 5, rows
    for row in rows:
        assert _number(row[1]) > 0 and _number(row[4]) > 0, row
    assert "compute roofline" in results and "memory roofline" in results
    bound = _rows(results, "LLM: what bounds decode")
    assert [row[0].split(" (")[0] for row in bound] == [
        "whole token", "weight-independent floor", "the rest: reading and multiplying the weights"]
    assert _number(bound[0][1]) > 0 and _number(bound[1][1]) > 0, bound
    kinds = _rows(results, "LLM: the same weights as other types")
    assert [row[0] for row in kinds] == ["tiny.gguf", "as Q8_0", "as F16"], kinds
    assert all(_number(row[2]) > 0 for row in kinds), kinds
    chat = _rows(results, "LLM: prompt tokens evaluated per turn")
    assert len(chat) == 2
    assert all(int(total) >= int(evaluated) > 0 for _, total, evaluated, _ in chat), chat


@pytest.mark.slow
def test_voice_smoke(tmp_path: Path) -> None:
    _bench(tmp_path, "--suite", "voice", timeout=600)
    results = (tmp_path / "results.md").read_text()
    rows = {r[0]: r for r in _rows(results, "Voice: scripted conversation")}
    assert {"stock", "tuned", "stock / tuned"} <= set(rows)
    for profile in ("stock", "tuned"):
        assert rows[profile][1] == "us-m7"  # the smoke pass runs the panel's first voice
        assert _number(rows[profile][2]) > 0  # voice-to-voice p50
        assert rows[profile][5].endswith("/2")
    work = {r[0]: r for r in _rows(results, "Voice: work per session")}
    for profile in ("stock", "tuned"):  # CPU seconds of the app and of the LLM server
        assert _number(work[profile][6]) > 0 and _number(work[profile][7]) > 0, work[profile]
    stages = _rows(results, "Voice: where the time goes")
    assert any(r[0] == "STT (Whisper)" and _number(r[1]) > 0 for r in stages)
    whisper = _rows(results, "Components: Whisper base")
    assert {(r[0], r[1]) for r in whisper} == {("1", "1"), ("5", "1"), ("1", "2"), ("5", "2")}
    assert all(_number(r[2]) > 0 for r in whisper)
    piper = _rows(results, "Components: Piper joe-medium")
    assert _number(piper[0][1].removesuffix(" s")) > 0
    spin = _rows(results, "Components: Piper with onnxruntime's threads")
    assert [r[0] for r in spin] == ["idle machine"] * 2 + ["llama-server decoding"] * 2
    assert all(_number(r[2]) > 0 for r in spin)
    for name in ("voice_stages.png", "voice_latency.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert (tmp_path / "voice" / "us-m7" / "tuned" / "timeline.jsonl").stat().st_size > 0
    # Each profile ran on the server its own app would start: the prompt threads differ.
    tuned_tb = batch_threads(0)
    assert f"prompt threads (-tb) stock 1, tuned {tuned_tb}" in results
    log = "llama-server.log" if tuned_tb == 1 else f"llama-server-tb{tuned_tb}.log"
    assert "prompt eval time" in (tmp_path / "voice" / log).read_text()
