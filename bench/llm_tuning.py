"""LLM tuning suite: what each llama-server setting does to prompt evaluation and decode.

Every variant below is a real llama-server on the same model, all started at once and asked
in turn (round-robin), so slow drift of the shared machine hits them alike. Each request
disables the prompt cache and ignores end-of-sequence, so a long prompt measures prompt
evaluation and a short one measures decode. Two ceilings frame the figures:

- memory roofline for decode: read bandwidth (numpy, 1 thread) / bytes of weights per token;
- compute roofline for prompt evaluation: the core's measured peak (a float32 matrix product
  in numpy, 1 thread) / 2 x parameters FLOPs per token.

What bounds decode is measured, not guessed: a tiny random model with the real model's depth
(same number of blocks, hence the same graph of operations per token, but a few kB of weights)
decodes at the per-token cost that does not depend on the weights: graph work, operator
dispatch, sampling and the server loop. The real model's time per token minus that is the
time spent on its weights; its weight bytes over that time is the bandwidth decode achieved,
set beside the measured read bandwidth. The same weights stored as Q8_0 and F16 (more bytes,
simpler arithmetic; bench/requant.py) show whether that rate is memory's limit or the
kernel's: if the bigger types move more bytes per second, Q4_1's arithmetic is the bound.

A separate conversation check asks whether any turn of a growing chat pays for an uncached
prompt: with the prompt cache on (as the app runs), the server's ``prompt_n`` per turn must
stay near the new text of that turn, not the whole history.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from bench.bandwidth import measure
from bench.common import Table, fmt, median
from bench.llm import Sample, make_prompt, post_json, stream_chat, weight_bytes
from bench.requant import TARGETS, requantize
from devtools.tinygguf import write_tiny_gguf
from pipecatapp.embedded.server import LlamaServer

# (label, extra llama-server arguments, threads); the first is the app's own setting.
VARIANTS: list[tuple[str, tuple[str, ...], int]] = [
    ("baseline (the app's: 1 thread, -c 4096, defaults)", (), 1),
    ("flash attention on (-fa on)", ("-fa", "on"), 1),
    ("KV cache q8_0 (-fa on -ctk q8_0 -ctv q8_0)",
     ("-fa", "on", "-ctk", "q8_0", "-ctv", "q8_0"), 1),
    ("micro-batch 128 (-ub 128)", ("-ub", "128"), 1),
    ("batch and micro-batch 2048 (-b 2048 -ub 2048)", ("-b", "2048", "-ub", "2048"), 1),
    ("2 threads", (), 2),
    ("2 threads, --poll 0", ("--poll", "0"), 2),
]


def parameters(model: Path) -> int:
    """Number of weights in the GGUF (elements of every tensor)."""
    return sum(int(np.prod(t.shape)) for t in gguf.GGUFReader(model).tensors)


_PEAK = """
import time, numpy as np
n = 1024
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(7))
print(2 * n**3 / best / 1e9)
"""


def peak_gflops() -> float:
    """Best float32 GEMM rate of one core: numpy's BLAS in a process held to one thread."""
    one = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True,
                            env=os.environ | one, check=True, timeout=120)
    return float(result.stdout.strip())


@contextlib.contextmanager
def _server(model: Path, threads: int, extra: tuple[str, ...], logs: Path,
            name: str) -> Iterator[str]:
    server = LlamaServer(model, threads=threads, ctx=4096, extra_args=extra,
                         log_path=logs / f"tuning-{name}.log")
    with server:
        yield server.base_url


def conversation(base_url: str, turns: int) -> list[tuple[int, int]]:
    """(prompt tokens in total, prompt tokens evaluated) per turn of a growing chat."""
    messages = [{"role": "system", "content": "You are a helpful voice assistant. Answer in "
                 "one or two short sentences."}]
    questions = ["What is the capital of France?", "And of Germany?", "How far apart are they?",
                 "What river runs through Paris?", "Name a famous bridge there.",
                 "What is the weather like in spring?", "Is it a good time to visit?",
                 "What should I eat there?"]
    out = []
    for i in range(turns):
        messages.append({"role": "user", "content": questions[i % len(questions)]})
        reply = post_json(f"{base_url}/chat/completions",
                      {"messages": messages, "max_tokens": 24, "temperature": 0,
                       "cache_prompt": True}, timeout=120)
        timings = reply.get("timings", {})
        usage = reply.get("usage", {})
        total = int(usage.get("prompt_tokens") or 0)
        evaluated = int(timings.get("prompt_n") or total)
        out.append((total, evaluated))
        messages.append({"role": "assistant",
                         "content": reply["choices"][0]["message"]["content"]})
    return out


@dataclass
class TuningRun:
    model: Path
    short: int
    long: int
    results: dict[str, dict[int, list[Sample]]]
    roof_decode: float
    roof_prompt: float
    chat: list[tuple[int, int]]
    failures: list[str]
    bandwidth_gbs: float = 0.0
    blocks: int = 0
    floor: list[Sample] | None = None  # decode of the same-depth tiny model (baseline setting)
    # the same weights as another type: (file, decode samples) per type name
    types: dict[str, tuple[Path, list[Sample]]] = field(default_factory=dict)


def run(model: Path, *, repeats: int, logs: Path, progress: Callable[[str], None],
        short: int = 32, long: int = 512, turns: int = 8) -> TuningRun:
    progress("measuring the 1-thread memory bandwidth and compute peak")
    bandwidth = measure(1)
    blocks = block_count(model)
    roof_decode = bandwidth.read_gbs * 1e9 / weight_bytes(model)
    roof_prompt = peak_gflops() * 1e9 / (2 * parameters(model))
    results: dict[str, dict[int, list[Sample]]] = {}
    failures: list[str] = []
    chat: list[tuple[int, int]] = []
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        for i, (label, extra, threads) in enumerate(VARIANTS):
            progress(f"starting {label}")
            try:
                urls[label] = stack.enter_context(_server(model, threads, extra, logs, str(i)))
            except Exception as error:
                failures.append(f"{label}: did not start: {str(error).splitlines()[0]}")
        prompts = {}
        for label, url in urls.items():
            root = url.removesuffix("/v1")
            prompts[label] = {short: make_prompt(root, short), long: make_prompt(root, long)}
            stream_chat(url, "Hello", 4)  # warm-up
            results[label] = {short: [], long: []}
        for rep in range(repeats):
            progress(f"round {rep + 1}/{repeats}")
            for n in (short, long):
                for label, url in urls.items():
                    try:
                        results[label][n].append(stream_chat(url, prompts[label][n], 32))
                    except Exception as error:
                        failures.append(f"{label}, prompt {n}: {error}")
        baseline = next(iter(urls.values()), None)
        if baseline:
            progress(f"a {turns}-turn conversation with the prompt cache on")
            chat = conversation(baseline, turns)
    progress(f"decode floor: a tiny random model with {blocks} blocks")
    floor = decode_floor(blocks, repeats, logs, short)
    types: dict[str, tuple[Path, list[Sample]]] = {}
    for name, target in TARGETS.items():
        progress(f"the same weights as {name}")
        try:
            other = requantize(model, logs / f"{model.stem}.{name}.gguf", target)
            types[name] = (other, decode_samples(other, repeats, logs, short, name))
        except Exception as error:
            failures.append(f"weights as {name}: {str(error).splitlines()[0]}")
    return TuningRun(model, short, long, results, roof_decode, roof_prompt, chat, failures,
                     bandwidth.read_gbs, blocks, floor, types)


def block_count(model: Path) -> int:
    """Transformer blocks of the GGUF (``<arch>.block_count``)."""
    reader = gguf.GGUFReader(model)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    field = reader.fields[f"{arch}.block_count"]
    return int(field.parts[field.data[0]][0])


def decode_floor(blocks: int, repeats: int, logs: Path, short: int) -> list[Sample]:
    """Decode samples of a tiny model with ``blocks`` blocks, the app's setting (1 thread)."""
    tiny = write_tiny_gguf(logs / f"tiny-{blocks}-blocks.gguf", n_layer=blocks)
    return decode_samples(tiny, repeats, logs, short, "floor")


def decode_samples(model: Path, repeats: int, logs: Path, short: int,
                   name: str) -> list[Sample]:
    """Decode samples (``short``-token prompt, 32 tokens) of ``model`` with the app's setting."""
    with _server(model, 1, (), logs, name) as url:
        prompt = make_prompt(url.removesuffix("/v1"), short)
        stream_chat(url, "Hello", 4)
        return [stream_chat(url, prompt, 32) for _ in range(max(repeats, 3))]


def tables(run_: TuningRun) -> list[Table]:
    table = Table(
        f"LLM tuning: {run_.model.name}, each setting against the app's, server-side medians",
        ["setting", "decode tok/s", "decode / memory roofline", "decode vs baseline",
         f"prompt eval tok/s ({run_.long} tokens)", "prompt eval / compute roofline",
         "prompt eval vs baseline"])
    base_d = base_p = None
    for label, by_len in run_.results.items():
        decode = [s.server_decode_tps or s.decode_tps for s in by_len[run_.short]]
        prompt = [s.server_prompt_tps or 0.0 for s in by_len[run_.long]]
        if not decode or not prompt:
            continue
        d, p = median(decode), median(prompt)
        if base_d is None:
            base_d, base_p = d, p
        table.add(label, fmt(d, 1), fmt(d / run_.roof_decode, 2), fmt(d / base_d, 2),
                  fmt(p, 0), fmt(p / run_.roof_prompt, 2), fmt(p / base_p, 2) if base_p else "-")
    table.notes += [
        f"memory roofline (1 thread): {run_.roof_decode:.0f} tok/s; compute roofline "
        f"(1 thread, float32 GEMM peak / 2 x parameters): {run_.roof_prompt:.0f} tok/s",
        f"decode measured after a {run_.short}-token prompt, 32 tokens; prompt eval on a "
        f"{run_.long}-token prompt; the prompt cache off for both",
    ] + [f"failed: {f}" for f in run_.failures]
    bound = decode_bound(run_)
    chat = Table("LLM: prompt tokens evaluated per turn of a conversation (prompt cache on)",
                 ["turn", "prompt tokens", "evaluated", "reused from the cache"])
    for i, (total, evaluated) in enumerate(run_.chat, 1):
        chat.add(i, total, evaluated, total - evaluated)
    chat.notes.append("a turn that pays for an uncached prompt shows evaluated close to the "
                      "prompt tokens; the app keeps the prompt's start stable so only the new "
                      "turn is evaluated")
    return [table, *bound, chat]


def decode_bound(run_: TuningRun) -> list[Table]:
    """Where one decoded token's time goes (baseline setting): the weight-independent floor
    and the rest, with the bandwidth that rest implies."""
    base = next(iter(run_.results.values()), {}).get(run_.short, [])
    floor = [s.server_decode_tps or s.decode_tps for s in run_.floor or []]
    if not base or not floor:
        return []
    extra: list[Table] = []
    per_token = 1 / median([s.server_decode_tps or s.decode_tps for s in base])
    fixed = 1 / median(floor)
    weights = weight_bytes(run_.model)
    table = Table("LLM: what bounds decode (1 thread, the app's setting)",
                  ["part of one decoded token", "ms", "share"])
    table.add("whole token (the model)", fmt(per_token * 1e3, 2), "1.00")
    table.add(f"weight-independent floor (tiny model, {run_.blocks} blocks)",
              fmt(fixed * 1e3, 2), fmt(fixed / per_token, 2))
    rest = per_token - fixed
    table.add("the rest: reading and multiplying the weights", fmt(rest * 1e3, 2),
              fmt(rest / per_token, 2))
    if rest > 0:
        achieved = weights / rest / 1e9
        table.notes.append(
            f"{weights / 1e6:.0f} MB of weights in {rest * 1e3:.2f} ms: {achieved:.1f} GB/s, "
            f"{achieved / run_.bandwidth_gbs:.2f} of the measured 1-thread read bandwidth "
            f"({run_.bandwidth_gbs:.1f} GB/s)")
    rows = [(run_.model.name, weights, per_token)] + [
        (f"as {name}", weight_bytes(path), 1 / median([s.server_decode_tps or s.decode_tps
                                                       for s in samples]))
        for name, (path, samples) in run_.types.items() if samples]
    if len(rows) > 1:
        kinds = Table("LLM: the same weights as other types (1 thread, the app's setting)",
                      ["weights", "MB", "ms per token", "ms beyond the floor",
                       "GB/s beyond the floor"])
        for label, size, seconds in rows:
            moving = seconds - fixed
            kinds.add(label, fmt(size / 1e6, 0), fmt(seconds * 1e3, 2), fmt(moving * 1e3, 2),
                      fmt(size / moving / 1e9, 1) if moving > 0 else "-")
        kinds.notes.append("re-quantized with bench/requant.py; if a bigger type moves more "
                           "bytes per second, the smaller type's arithmetic, not memory, bounds "
                           "decode")
        extra.append(kinds)
    table.notes.append("the floor is graph building, operator dispatch, sampling and the "
                       "server loop for the same number of blocks; the real model's larger "
                       "vocabulary adds sampling work that lands in the rest")
    return [table, *extra]
