"""LLM suite: time to first token and decode speed against prompt length, per engine.

Engines (all on loopback): llama-server with 1 and 2 threads, 1 thread while another
process keeps one core busy (what STT/TTS do to the LLM on a 2-core box), 2 threads with
``--poll 0`` under the same load, the llama.cpp RPC split (ggml-rpc-server + llama-server
``--rpc``), and, where ``PRIMACPP_DIR`` is set, prima.cpp on one node and as a 2-rank ring.
Requests are round-robined over the engines of a phase so slow drift of the shared machine
hits them alike; every request disables the prompt cache and ignores end-of-sequence, so the
prompt is evaluated in full and exactly ``max_tokens`` tokens are decoded.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf

from bench.bandwidth import Bandwidth, measure
from bench.common import Table, fmt, median
from pipecatapp.embedded.server import LlamaServer, free_port, llama_bin_dir

_WORD_TEXT = ("the river runs past old stone houses where people sell bread fish and flowers "
          "while children play near the water and the bells ring at noon")
_WORDS = _WORD_TEXT.split()


@dataclass
class Sample:
    prompt_tokens: int
    ttft: float  # request sent -> first content token received (client side), s
    decode_tps: float  # tokens after the first / time they took (client side)
    server_decode_tps: float | None
    server_prompt_tps: float | None
    tokens: int


def post_json(url: str, body: dict, timeout: float = 30) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def count_tokens(root_url: str, text: str) -> int:
    return len(post_json(f"{root_url}/tokenize", {"content": text})["tokens"])


def make_prompt(root_url: str, target_tokens: int) -> str:
    """User text of about ``target_tokens`` tokens (measured by the server's tokenizer)."""
    words = max(1, target_tokens)
    for _ in range(4):
        text = " ".join(_WORDS[i % len(_WORDS)] for i in range(words))
        n = count_tokens(root_url, text)
        if abs(n - target_tokens) <= max(2, target_tokens // 50):
            break
        words = max(1, round(words * target_tokens / max(n, 1)))
    return text


def stream_chat(base_url: str, user_text: str, max_tokens: int, timeout: float = 300) -> Sample:
    """One streamed chat completion; timings from the client's clock (and the server's)."""
    body = {
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": f"[{uuid.uuid4().hex[:8]}] {user_text}"}],
        "stream": True, "max_tokens": max_tokens, "temperature": 0, "cache_prompt": False,
        "ignore_eos": True, "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(f"{base_url}/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    sent = time.perf_counter()
    arrivals: list[float] = []
    timings: dict = {}
    usage: dict = {}
    with urllib.request.urlopen(request, timeout=timeout) as response:
        for raw in response:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            timings = chunk.get("timings") or timings
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                if (choice.get("delta") or {}).get("content"):
                    arrivals.append(time.perf_counter())
    if not arrivals:
        raise RuntimeError(f"{base_url}: the stream carried no tokens")
    n = int(timings.get("predicted_n") or usage.get("completion_tokens") or len(arrivals))
    span = arrivals[-1] - arrivals[0]
    decode = (len(arrivals) - 1) / span if span > 0 and len(arrivals) > 1 else 0.0
    prompt_n = int(timings.get("prompt_n") or usage.get("prompt_tokens") or 0)
    return Sample(prompt_n, arrivals[0] - sent, decode, timings.get("predicted_per_second"),
                  timings.get("prompt_per_second"), n)


# -- engines ------------------------------------------------------------------------------------

@dataclass
class Engine:
    name: str
    threads: int
    start: Callable[[Path], contextlib.AbstractContextManager[str]]  # model -> base_url
    load: bool = False  # run with one core kept busy by another process
    note: str = ""


def _spin(stop_at: float) -> None:
    x = 0
    while time.monotonic() < stop_at:
        x += 1


@contextlib.contextmanager
def busy_core(seconds: float = 3600) -> Iterator[None]:
    """Keep one core busy (a spinning process) for the duration."""
    proc = multiprocessing.get_context("spawn").Process(
        target=_spin, args=(time.monotonic() + seconds,), daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.terminate()
        proc.join(5)


@contextlib.contextmanager
def _llama(model: Path, threads: int, poll: int | None = None,
           extra: tuple[str, ...] = (), binary: Path | None = None,
           batch: int | None = None) -> Iterator[str]:
    server = LlamaServer(model, threads=threads, batch_threads=batch, ctx=4096, poll=poll,
                         extra_args=extra, binary=binary)
    with server:
        yield server.base_url


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def _process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def _rpc(model: Path, threads: int, logs: Path) -> Iterator[str]:
    port = free_port()
    rpc_bin = llama_bin_dir() / "ggml-rpc-server"
    with _process([str(rpc_bin), "-H", "127.0.0.1", "-p", str(port), "-t", str(threads)],
                  logs / f"ggml-rpc-server-{port}.log") as proc:
        _wait_port(port, proc)
        with _llama(model, threads, extra=("--rpc", f"127.0.0.1:{port}", "-ngl", "99")) as url:
            yield url


def _wait_health(root: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prima.cpp exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{root}/health", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"prima.cpp at {root} not ready after {timeout} s")


@contextlib.contextmanager
def _prima(model: Path, threads: int, world: int, logs: Path) -> Iterator[str]:
    prima = Path(os.environ["PRIMACPP_DIR"])
    port = free_port()
    base = ["-m", str(model), "-t", str(threads)]
    server = [str(prima / "llama-server"), *base, "-c", "4096", "-np", "1",
              "--host", "127.0.0.1", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        if world > 1:
            data, sig = free_port(), free_port()
            layers = _layer_count(model)
            window = ",".join(str(layers // world) for _ in range(world))
            ring = ["--world", str(world), "--master", "127.0.0.1", "--next", "127.0.0.1",
                    "--data-port", str(data), "--signal-port", str(sig)]
            for rank in range(1, world):
                stack.enter_context(_process(
                    [str(prima / "llama-cli"), *base, *ring, "--rank", str(rank)],
                    logs / f"prima-rank{rank}-{port}.log"))
            server += [*ring, "--rank", "0", "-lw", window]
        proc = stack.enter_context(_process(server, logs / f"prima-rank0-{port}.log"))
        _wait_health(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}/v1"


def _layer_count(model: Path) -> int:
    reader = gguf.GGUFReader(model)
    field_ = reader.fields["llama.block_count"]
    return int(field_.parts[field_.data[0]][0])


def weight_bytes(model: Path) -> int:
    """Bytes of tensor data a decode step reads (every weight once)."""
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(model).tensors)


_ROOT = Path(__file__).resolve().parents[1]
NATIVE = "llama-server (native build)"


def native_bin_dir() -> Path:
    """A -march=native build (AMX off) of the same llama.cpp, cached per CPU; several minutes
    the first time. Only the benchmark uses it: it runs on this CPU and no other."""
    result = subprocess.run(["bash", str(_ROOT / "scripts" / "build-llama-server.sh"), "native"],
                            stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the native build failed (exit {result.returncode})")
    return Path(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _native(model: Path, threads: int) -> Iterator[str]:
    with _llama(model, threads, binary=native_bin_dir() / "llama-server") as url:
        yield url


def engines(smoke: bool, logs: Path, builds_only: bool = False) -> tuple[list[Engine], list[str]]:
    skipped: list[str] = []
    found = [
        Engine("llama-server", 1, lambda m: _llama(m, 1),
               note="the portable build (runtime CPU dispatch) that the app uses"),
        Engine(NATIVE, 1, lambda m: _native(m, 1),
               note="-march=native without AMX, same source; for comparison only"),
        Engine("llama-server", 2, lambda m: _llama(m, 2)),
        Engine("llama-server, 1 core busy", 1, lambda m: _llama(m, 1), load=True),
        Engine("llama-server, 1 core busy", 2, lambda m: _llama(m, 2), load=True),
        Engine("llama-server --poll 0, 1 core busy", 2, lambda m: _llama(m, 2, poll=0),
               load=True),
        Engine("llama.cpp RPC (loopback)", 1, lambda m: _rpc(m, 1, logs),
               note="ggml-rpc-server holds all layers; llama-server --rpc -ngl 99"),
        Engine("llama-server -tb 2", 1, lambda m: _llama(m, 1, batch=2),
               note="the tuned profile's embedded server on 2 cores"),
        Engine("llama-server -tb 2, 1 core busy", 1, lambda m: _llama(m, 1, batch=2),
               load=True),
    ]
    if builds_only:
        return found[:2], ["other engines: skipped (--builds: the portable and native builds "
                           "only)"]
    if smoke:
        found = [found[0], found[6]]
        skipped.append(f"{NATIVE}: skipped in the smoke pass (it compiles for minutes)")
    if os.environ.get("PRIMACPP_DIR"):
        found += [
            Engine("prima.cpp, 1 node", 1, lambda m: _prima(m, 1, 1, logs)),
            Engine("prima.cpp ring, 2 ranks (loopback)", 1, lambda m: _prima(m, 1, 2, logs),
                   note="-lw split evenly, ranks on one machine"),
        ]
    else:
        skipped.append("prima.cpp: skipped, PRIMACPP_DIR is not set (a directory with "
                       "prima.cpp's llama-server and llama-cli)")
    return found, skipped


@dataclass
class LlmRun:
    model: Path
    lengths: list[int]
    max_tokens: int
    results: dict[str, list[tuple[int, Sample]]]  # engine label -> (target length, sample)
    bandwidth: list[Bandwidth]
    weight_bytes: int
    skipped: list[str]
    failures: list[str]
    cpu_variant: str = ""


def label(engine: Engine) -> str:
    return f"{engine.name}, {engine.threads} thread{'s' if engine.threads > 1 else ''}"


def run(model: Path, *, smoke: bool, repeats: int, logs: Path,
        progress: Callable[[str], None], lengths: list[int] | None = None,
        loaded: bool = True, builds_only: bool = False) -> LlmRun:
    lengths = lengths or ([16, 64] if smoke else [32, 128, 512, 1024])
    max_tokens = 16 if smoke else 64
    found, skipped = engines(smoke, logs, builds_only)
    if not loaded:
        found = [e for e in found if not e.load]
        skipped.append("runs with one core kept busy: skipped (--skip-loaded)")
    failures: list[str] = []
    results: dict[str, list[tuple[int, Sample]]] = {label(e): [] for e in found}
    progress("measuring memory bandwidth")
    bandwidth = [measure(1, mib=64 if smoke else 256), measure(2, mib=64 if smoke else 256)]
    phases = [[e for e in found if not e.load], [e for e in found if e.load]]
    for phase in phases:
        if not phase:
            continue
        with contextlib.ExitStack() as stack:
            if phase[0].load:
                stack.enter_context(busy_core())
            urls: dict[str, str] = {}
            for engine in phase:
                progress(f"starting {label(engine)}")
                try:
                    urls[label(engine)] = stack.enter_context(engine.start(model))
                except Exception as error:
                    failures.append(f"{label(engine)}: did not start: {error}")
                    results.pop(label(engine), None)
            prompts: dict[str, dict[int, str]] = {}
            for name, url in urls.items():
                root = url.removesuffix("/v1")
                prompts[name] = {n: make_prompt(root, n) for n in lengths}
                stream_chat(url, "Hello", 4)  # warm-up, not counted
            for rep in range(repeats):
                progress(f"round {rep + 1}/{repeats}: {', '.join(urls)}")
                for n in lengths:
                    for name, url in urls.items():
                        try:
                            results[name].append((n, stream_chat(url, prompts[name][n],
                                                                 max_tokens)))
                        except Exception as error:
                            failures.append(f"{name}, prompt {n}: {error}")
    compared = any(name.startswith(NATIVE) for name in results)
    return LlmRun(model, lengths, max_tokens, results, bandwidth, weight_bytes(model), skipped,
                  failures, cpu_variant() if compared else "")


def cpu_variant() -> str:
    """The libggml-cpu-<variant>.so the portable build picks on this machine."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "smoke.log"
        subprocess.run([sys.executable, str(_ROOT / "scripts" / "llama-smoke.py"),
                        str(llama_bin_dir()), "--log", str(log), "--arg=-lv", "--arg=4"],
                       capture_output=True,
                       check=False)
        found = re.findall(r"libggml-cpu-([\w.]+)\.so", log.read_text() if log.exists() else "")
    return found[-1] if found else ""


def tables(run_: LlmRun) -> list[Table]:
    main = Table(
        f"LLM: {run_.model.name}, {run_.max_tokens} decoded tokens, medians",
        ["engine", "prompt tokens", "TTFT s", "decode tok/s", "server decode tok/s",
         "prompt eval tok/s", "n"],
    )
    for name, samples in run_.results.items():
        for n in run_.lengths:
            group = [s for target, s in samples if target == n]
            if not group:
                continue
            server_decode = [s.server_decode_tps for s in group if s.server_decode_tps]
            server_prompt = [s.server_prompt_tps for s in group if s.server_prompt_tps]
            main.add(name, int(median([s.prompt_tokens or n for s in group])),
                     fmt(median([s.ttft for s in group])),
                     fmt(median([s.decode_tps for s in group]), 1),
                     fmt(median(server_decode), 1) if server_decode else "-",
                     fmt(median(server_prompt), 0) if server_prompt else "-", len(group))
    main.notes += run_.skipped + [f"failed: {f}" for f in run_.failures]
    ceiling = Table("LLM: memory-bandwidth ceiling for decode",
                    ["threads", "read GB/s", "copy GB/s", "model bytes/token",
                     "ceiling tok/s", "llama-server tok/s (shortest prompt)", "fraction"])
    for bw in run_.bandwidth:
        ceiling_tps = bw.read_gbs * 1e9 / run_.weight_bytes
        key = next((k for k in run_.results
                    if k.startswith("llama-server,") and k.endswith(
                        f"{bw.threads} thread{'s' if bw.threads > 1 else ''}")), None)
        measured = None
        if key:
            group = [s.decode_tps for t, s in run_.results[key] if t == run_.lengths[0]]
            measured = median(group) if group else None
        ceiling.add(bw.threads, fmt(bw.read_gbs, 1), fmt(bw.copy_gbs, 1),
                    f"{run_.weight_bytes / 1e6:.1f} MB", fmt(ceiling_tps, 0),
                    fmt(measured, 1), fmt(measured / ceiling_tps, 2) if measured else "-")
    ceiling.notes.append("bandwidth: best of 5 numpy passes over 256 MiB (read = sum, "
                         "copy = read + write); a decode step reads every weight once")
    return [main, ceiling, *builds_table(run_)]


def builds_table(run_: LlmRun) -> list[Table]:
    """The portable build against the native one, 1 thread, from the same run."""
    portable, native = run_.results.get("llama-server, 1 thread"), run_.results.get(
        f"{NATIVE}, 1 thread")
    if not portable or not native:
        return []
    table = Table("LLM: portable build (runtime CPU dispatch) vs native build, 1 thread, "
                  "server-side medians",
                  ["prompt tokens", "portable decode tok/s", "native decode tok/s",
                   "decode ratio", "decode / memory roofline (portable, native)",
                   "portable prompt eval tok/s", "native prompt eval tok/s",
                   "prompt eval ratio"])
    one = next((bw for bw in run_.bandwidth if bw.threads == 1), None)
    roof = one.read_gbs * 1e9 / run_.weight_bytes if one else 0.0
    for n in run_.lengths:
        row = []
        for samples in (portable, native):
            group = [s for t, s in samples if t == n]
            row.append((median([s.server_decode_tps or s.decode_tps for s in group]),
                        median([s.server_prompt_tps or 0.0 for s in group])))
        (pd, pp), (nd, np_) = row
        table.add(n, fmt(pd, 1), fmt(nd, 1), fmt(pd / nd, 2) if nd else "-",
                  f"{pd / roof:.2f}, {nd / roof:.2f}" if roof else "-", fmt(pp, 0),
                  fmt(np_, 0), fmt(pp / np_, 2) if np_ else "-")
    table.notes.append("ratio = portable / native; the portable build should lose at most 10 %")
    if roof:
        table.notes.append(f"memory roofline, 1 thread: {roof:.0f} tok/s (read bandwidth / "
                           "bytes of weights a decode step reads)")
    if run_.cpu_variant:
        table.notes.append(f"CPU variant the portable build loaded here: {run_.cpu_variant}")
    return [table]


def plots(run_: LlmRun, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for metric, ylabel, fname in (("ttft", "time to first token (s)", "llm_ttft.png"),
                                  ("decode_tps", "decode tokens/s", "llm_decode.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, samples in run_.results.items():
            xs, ys = [], []
            for n in run_.lengths:
                group = [s for t, s in samples if t == n]
                if group:
                    xs.append(median([s.prompt_tokens or n for s in group]))
                    ys.append(median([getattr(s, metric) for s in group]))
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{run_.model.name}: {ylabel} (median)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
