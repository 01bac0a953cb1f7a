#!/usr/bin/env python3
"""Prove that a freshly built llama.cpp (or prima.cpp) binary runs on this machine.

Writes a tiny random-weight llama GGUF (about 40 kB, standard library only), starts the
given ``llama-server`` on it on a free loopback port, asks for one token, and stops it. A
binary that cannot run on this CPU dies here, at build time, with a message that names the
host, the binary and the likely cause, instead of at the user's first question.

    llama-smoke.py BIN_DIR_OR_LLAMA_SERVER [--timeout S] [--log FILE] [--wrap "CMD ARGS"]
    llama-smoke.py --write-gguf OUT.gguf        only write the tiny model

``--wrap`` runs the server under another command, e.g. ``--wrap "qemu-x86_64 -cpu Haswell"``
to prove that a build runs on an older CPU than the one that built it.

Exit status: 0 when one token came back, 1 when the binary failed (message on stderr),
2 on bad arguments. Used by scripts/build-llama-server.sh and the primacpp role; needs only
Python 3.8+ (no third-party packages), so it runs on any node Ansible can manage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# ---------------------------------------------------------------------------------------
# A tiny GGUF (version 3): a 1-layer llama with a SentencePiece vocabulary of byte tokens.

_U32, _I32, _F32, _BOOL, _STRING, _ARRAY, _U64 = 4, 5, 6, 7, 8, 9, 10
_ALIGN = 32
N_EMBD, N_HEAD, N_FF, N_LAYER = 32, 2, 64, 1
_TYPE_NORMAL, _TYPE_UNKNOWN, _TYPE_CONTROL, _TYPE_BYTE = 1, 2, 3, 6


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(kind: int, value: object) -> bytes:
    if kind == _STRING:
        return _string(str(value))
    if kind == _U32:
        return struct.pack("<I", value)
    if kind == _I32:
        return struct.pack("<i", value)
    if kind == _F32:
        return struct.pack("<f", value)
    if kind == _BOOL:
        return struct.pack("<?", value)
    raise ValueError(kind)


def _kv(key: str, kind: int, value: object) -> bytes:
    return _string(key) + struct.pack("<I", kind) + _value(kind, value)


def _kv_array(key: str, kind: int, values: list) -> bytes:
    body = b"".join(_value(kind, v) for v in values)
    return _string(key) + struct.pack("<IIQ", _ARRAY, kind, len(values)) + body


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [_TYPE_UNKNOWN, _TYPE_CONTROL, _TYPE_CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_TYPE_BYTE] * 256
    for word in ("\u2581", "\u2581hello", "\u2581world", "\u2581the", "."):
        tokens.append(word)
        types.append(_TYPE_NORMAL)
    return tokens, [0.0] * len(tokens), types


def tiny_gguf_bytes(seed: int = 0) -> bytes:
    """The whole tiny model as bytes (deterministic for a seed)."""
    rng = random.Random(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)

    def matrix(rows: int, cols: int) -> tuple[list[int], list[float]]:
        # numpy-style (rows, cols) is ggml ne = [cols, rows]
        return [cols, rows], [rng.gauss(0.0, 0.2) for _ in range(rows * cols)]

    def ones(n: int) -> tuple[list[int], list[float]]:
        return [n], [1.0] * n

    tensors: list[tuple[str, tuple[list[int], list[float]]]] = [
        ("token_embd.weight", matrix(n_vocab, N_EMBD))
    ]
    for layer in range(N_LAYER):
        p = f"blk.{layer}."
        tensors += [
            (p + "attn_norm.weight", ones(N_EMBD)),
            (p + "attn_q.weight", matrix(N_EMBD, N_EMBD)),
            (p + "attn_k.weight", matrix(N_EMBD, N_EMBD)),
            (p + "attn_v.weight", matrix(N_EMBD, N_EMBD)),
            (p + "attn_output.weight", matrix(N_EMBD, N_EMBD)),
            (p + "ffn_norm.weight", ones(N_EMBD)),
            (p + "ffn_gate.weight", matrix(N_FF, N_EMBD)),
            (p + "ffn_up.weight", matrix(N_FF, N_EMBD)),
            (p + "ffn_down.weight", matrix(N_EMBD, N_FF)),
        ]
    tensors += [("output_norm.weight", ones(N_EMBD)), ("output.weight", matrix(n_vocab, N_EMBD))]

    kvs = [
        _kv("general.architecture", _STRING, "llama"),
        _kv("general.name", _STRING, "llama-smoke-tiny-random"),
        _kv("general.alignment", _U32, _ALIGN),
        _kv("llama.context_length", _U32, 256),
        _kv("llama.embedding_length", _U32, N_EMBD),
        _kv("llama.block_count", _U32, N_LAYER),
        _kv("llama.feed_forward_length", _U32, N_FF),
        _kv("llama.attention.head_count", _U32, N_HEAD),
        _kv("llama.attention.head_count_kv", _U32, N_HEAD),
        _kv("llama.attention.layer_norm_rms_epsilon", _F32, 1e-5),
        _kv("llama.rope.dimension_count", _U32, N_EMBD // N_HEAD),
        _kv("general.file_type", _U32, 0),  # all F32
        _kv("tokenizer.ggml.model", _STRING, "llama"),
        _kv_array("tokenizer.ggml.tokens", _STRING, tokens),
        _kv_array("tokenizer.ggml.scores", _F32, scores),
        _kv_array("tokenizer.ggml.token_type", _I32, types),
        _kv("tokenizer.ggml.unknown_token_id", _U32, 0),
        _kv("tokenizer.ggml.bos_token_id", _U32, 1),
        _kv("tokenizer.ggml.eos_token_id", _U32, 2),
        _kv("tokenizer.ggml.add_bos_token", _BOOL, True),
    ]

    infos, blobs, offset = [], [], 0
    for name, (dims, values) in tensors:
        data = struct.pack(f"<{len(values)}f", *values)
        infos.append(
            _string(name) + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", 0, offset)  # type F32, offset in the data section
        )
        pad = (-len(data)) % _ALIGN
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad

    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    meta = header + b"".join(kvs) + b"".join(infos)
    meta += b"\0" * ((-len(meta)) % _ALIGN)
    return meta + b"".join(blobs)


def write_gguf(path: Path) -> Path:
    path.write_bytes(tiny_gguf_bytes())
    return path


# ---------------------------------------------------------------------------------------
# The smoke run.

_HINT = {
    signal.SIGILL: "illegal instruction: the binary uses CPU instructions this machine lacks "
    "or cannot use (for example AMX or AVX-512 compiled in by -march=native on another CPU, "
    "or under a hypervisor that hides them)",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted (see the output above)",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith(("model name", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown CPU"


def _describe(code: int) -> str:
    if code < 0:
        sig = signal.Signals(-code)
        return f"killed by {sig.name} ({_HINT.get(sig, 'signal')})"
    return f"exited with status {code}"


def _post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def smoke(server: Path, gguf: Path, timeout: float, extra: list[str],
          wrap: list[str] | None = None, log_path: Path | None = None) -> str:
    """Run ``server`` on ``gguf``, ask for one token; return a one-line summary or raise."""
    port = _free_port()
    argv = [*(wrap or []), str(server), "-m", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "-t", "1", "-c", "256", "-np", "1", *extra]
    log = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=gguf.parent)
    started = time.monotonic()
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"{server.name} {_describe(code)} while loading the model")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{server.name} did not answer within {timeout:.0f} s")
            try:
                reply = _post(base + "/completion",
                              {"prompt": "hello", "n_predict": 1, "cache_prompt": False},
                              timeout=max(1.0, timeout - (time.monotonic() - started)))
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.2)
        if not reply.get("tokens_predicted"):
            raise RuntimeError(f"{server.name} answered without a token: {reply!r:.200}")
        return f"{server.name}: one token in {time.monotonic() - started:.1f} s"
    except RuntimeError:
        log.seek(0)
        tail = log.read().decode("utf-8", "replace").strip().splitlines()[-15:]
        if tail:
            sys.stderr.write("  last lines of its output:\n    " + "\n    ".join(tail) + "\n")
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", nargs="?", help="llama-server, or the directory holding it")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--gguf", type=Path, help="where to write the tiny model (kept)")
    parser.add_argument("--write-gguf", type=Path, metavar="OUT",
                        help="only write the tiny model to OUT")
    parser.add_argument("--arg", action="append", default=[], dest="extra",
                        help="one more argument for the server (repeatable)")
    parser.add_argument("--wrap", default="", help="run the server under this command")
    parser.add_argument("--log", type=Path, help="keep the server's output in this file")
    args = parser.parse_args(argv)
    if args.write_gguf:
        write_gguf(args.write_gguf)
        return 0
    if not args.binary:
        parser.error("give the llama-server binary or its directory")
    server = Path(args.binary)
    if server.is_dir():
        server = server / "llama-server"
    host = f"{socket.gethostname()} ({_cpu_model()})"
    if not (server.is_file() and os.access(server, os.X_OK)):
        sys.stderr.write(f"llama-smoke on {host}: {server} is not an executable file\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="llama-smoke-") as tmp:
        gguf = write_gguf(args.gguf or Path(tmp) / "tiny.gguf")
        try:
            summary = smoke(server, gguf, args.timeout, args.extra,
                            wrap=shlex.split(args.wrap), log_path=args.log)
        except RuntimeError as e:
            sys.stderr.write(f"llama-smoke on {host}: {server} cannot run here: {e}\n")
            return 1
    print(f"llama-smoke on {host}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
