"""The llama.cpp build runs on CPUs other than the one that built it.

The build from scripts/build-llama-server.sh (the README's first command builds it) is run
under Debian's qemu-user with an older CPU model (Haswell: no AVX-512, no AMX), so every CI
machine checks portability, whichever CPU it happens to have. scripts/llama-smoke.py is the
check that the setup and the roles run after every build.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scripts" / "llama-smoke.py"


def _smoke(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SMOKE), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_the_cached_build_is_the_portable_one(llama_bin: Path) -> None:
    """Runtime CPU dispatch: one CPU library per feature level, none of them AMX."""
    if platform.machine() != "x86_64":
        pytest.skip(f"the variant list is x86-64's; this machine is {platform.machine()}")
    variants = sorted(p.name for p in llama_bin.glob("libggml-cpu-*.so"))
    assert "libggml-cpu-haswell.so" in variants, variants
    assert "libggml-cpu-x64.so" in variants, variants
    assert not any("sapphirerapids" in v for v in variants), variants


def test_the_build_answers_on_this_cpu(llama_bin: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    result = _smoke(str(llama_bin), "--log", str(log), "--arg=-lv", "--arg=4")
    assert result.returncode == 0, result.stderr
    assert "llama-server: one token" in result.stdout
    loaded = [line for line in log.read_text().splitlines() if "libggml-cpu-" in line]
    assert loaded, log.read_text()[-2000:]


def test_the_build_answers_under_an_older_cpu(llama_bin: Path, tmp_path: Path) -> None:
    """qemu-x86_64 -cpu Haswell: the loader must pick the Haswell variant and answer."""
    if platform.machine() != "x86_64":
        pytest.skip(f"qemu's Haswell model is x86-64; this machine is {platform.machine()}")
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 is missing: scripts/setup.sh test installs Debian's qemu-user"
    log = tmp_path / "server.log"
    result = _smoke(str(llama_bin), "--wrap", f"{qemu} -cpu Haswell", "--log", str(log),
                    "--timeout", "240", "--arg=-lv", "--arg=4")
    assert result.returncode == 0, result.stderr + log.read_text()[-3000:]
    text = log.read_text()
    assert "libggml-cpu-haswell.so" in text, text[-3000:]


def test_a_binary_that_dies_with_sigill_is_named_with_its_cause(tmp_path: Path) -> None:
    """What a -march=native build from another CPU does on this one."""
    planted = tmp_path / "llama-server"
    planted.write_text("#!/bin/sh\nkill -ILL $$\n")
    planted.chmod(0o755)
    result = _smoke(str(tmp_path), timeout=60)
    assert result.returncode == 1
    message = result.stderr
    assert socket.gethostname() in message
    assert str(planted) in message
    assert signal.SIGILL.name in message and "illegal instruction" in message


def test_the_tiny_gguf_is_a_valid_llama_model(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    assert _smoke("--write-gguf", str(path)).returncode == 0
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "blk.0.attn_q.weight"} <= names
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"


BUILD = ROOT / "scripts" / "build-llama-server.sh"


def _build(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "LLAMA_SERVER_BIN"} | env
    return subprocess.run(["bash", str(BUILD), *args], capture_output=True, text=True,
                          env=full, timeout=60, check=False)


def test_check_mode_finds_the_cached_build(llama_bin: Path) -> None:
    """A second setup run reuses the build (what --check tells the role)."""
    if not (llama_bin / ".build-stamp").is_file():
        pytest.skip("LLAMA_SERVER_BIN points at a build this script did not make")
    result = _build("portable", "--check", env={"LLAMA_CPP_BIN_DIR": str(llama_bin)})
    assert result.returncode == 0, result.stderr
    assert "cached build" in result.stderr


def test_the_build_never_replaces_a_directory_it_did_not_make(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    target.mkdir()
    (target / "something-else").write_text("keep me")
    result = _build("portable", env={"LLAMA_CPP_BIN_DIR": str(target)})
    assert result.returncode == 2
    assert "was not made by this script" in result.stderr
    assert (target / "something-else").read_text() == "keep me"
    assert _build("portable", "--check",
                  env={"LLAMA_CPP_BIN_DIR": str(tmp_path / "empty")}).returncode == 3
