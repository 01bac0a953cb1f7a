"""primacpp-ring-launch on its own: clear errors naming the setting, the engine command lines,
waiting for discovery, and signal forwarding to a real ggml-rpc-server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from jobcheck.scripts import LAUNCHER, load_script
from pipecatapp.embedded.server import free_port, llama_bin_dir

from .ring_harness import SYSTEM_PYTHON

launch = load_script(LAUNCHER)
SECRET = "s3cr3t-key-never-logged"


@pytest.fixture
def settings(tmp_path: Path, tiny_gguf: Path) -> dict[str, str]:
    key = tmp_path / "api-key"
    key.write_text(SECRET + "\n")
    return {
        "PRIMACPP_ENGINE": "rpc", "PRIMACPP_RANK": "0", "PRIMACPP_WORLD": "3",
        "PRIMACPP_LAYER_WINDOW": "10,10,10", "PRIMACPP_GPU_LAYERS": "0",
        "PRIMACPP_MODEL": str(tiny_gguf), "PRIMACPP_PRIMA_BIN_DIR": str(tmp_path / "absent"),
        "PRIMACPP_LLAMA_BIN_DIR": str(llama_bin_dir()), "PRIMACPP_DATA_PORT": "9000",
        "PRIMACPP_SIGNAL_PORT": "10000", "PRIMACPP_RPC_PORT": "50052",
        "PRIMACPP_API_PORT": "8080", "PRIMACPP_CTX_SIZE": "1024", "PRIMACPP_PARALLEL": "1",
        "PRIMACPP_THREADS": "1", "PRIMACPP_PREFETCH": "true",
        "PRIMACPP_DISCOVERY_TIMEOUT": "3", "PRIMACPP_API_KEY_FILE": str(key),
        "PRIMACPP_BIND_IP": "127.0.0.1", "PRIMACPP_MASTER_IP": "127.0.0.1",
        "PRIMACPP_NEXT_IP": "127.0.0.2", "PRIMACPP_RANK_IPS": "127.0.0.1,127.0.0.2,127.0.0.3",
    }


def _write(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def _run(tmp_path: Path, values: dict[str, str], *extra: str,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    file = _write(tmp_path / "ring.env", values)
    return subprocess.run([SYSTEM_PYTHON, str(LAUNCHER), "--settings", str(file), *extra],
                          capture_output=True, text=True, timeout=timeout,
                          env={"PATH": os.environ["PATH"]})


def test_every_setting_is_documented_and_listed(tmp_path: Path, settings: dict[str, str]):
    listed = subprocess.run([SYSTEM_PYTHON, str(LAUNCHER), "--list-settings"],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    assert [line.split("\t")[0] for line in listed.splitlines()] == launch.SETTING_NAMES
    assert set(settings) == set(launch.SETTING_NAMES)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("PRIMACPP_ENGINE", "vllm", "must be primacpp or rpc"),
    ("PRIMACPP_RANK", "3", "must be between 0 and 2"),
    ("PRIMACPP_WORLD", "x", "must be an integer"),
    ("PRIMACPP_LAYER_WINDOW", "15,15", "needs exactly 3 positive values"),
    ("PRIMACPP_GPU_LAYERS", "11", "must be between 0 and 10"),
    ("PRIMACPP_MODEL", "/nonexistent/model.gguf", "no such file"),
    ("PRIMACPP_MODEL", "model.gguf", "must be an absolute path"),
    ("PRIMACPP_BIND_IP", "node1.lan", "must be an IPv4 address"),
    ("PRIMACPP_PREFETCH", "yes", "must be true or false"),
    ("PRIMACPP_LLAMA_BIN_DIR", "/nonexistent", "missing or not executable"),
    ("PRIMACPP_THREADS", "", "is not set"),
])
def test_bad_setting_exits_2_naming_it(tmp_path: Path, settings: dict[str, str], name: str,
                                       value: str, says: str):
    result = _run(tmp_path, {**settings, name: value})
    assert result.returncode == 2
    assert f"error: {name}: " in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_api_key_is_refused_and_a_key_is_never_printed(tmp_path: Path,
                                                             settings: dict[str, str]):
    empty = tmp_path / "empty-key"
    empty.write_text("")
    refused = _run(tmp_path, {**settings, "PRIMACPP_API_KEY_FILE": str(empty)})
    assert refused.returncode == 2
    assert "PRIMACPP_API_KEY_FILE" in refused.stderr and "nomad var put" in refused.stderr
    shown = _run(tmp_path, settings, "--print-command")
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr
    argv = json.loads(shown.stdout)
    assert argv[argv.index("--api-key-file") + 1] == settings["PRIMACPP_API_KEY_FILE"]


def test_peer_address_must_be_ipv4(tmp_path: Path, settings: dict[str, str]):
    result = _run(tmp_path, {**settings, "PRIMACPP_RANK_IPS": "a,b.lan,c"})
    assert result.returncode == 3
    assert "PRIMACPP_RANK_IPS: must be an IPv4 address" in result.stderr


def test_waits_for_discovery_then_uses_the_rerendered_file(tmp_path: Path,
                                                           settings: dict[str, str]):
    file = _write(tmp_path / "ring.env", {**settings, "PRIMACPP_RANK_IPS": "127.0.0.1,,",
                                          "PRIMACPP_DISCOVERY_TIMEOUT": "30"})
    later = threading.Timer(2.0, _write, (file, {**settings, "PRIMACPP_RANK_IPS":
                                                 "127.0.0.1,10.9.8.7,10.9.8.8"}))
    later.start()
    started = time.monotonic()
    result = subprocess.run([SYSTEM_PYTHON, str(LAUNCHER), "--settings", str(file),
                             "--print-command"], capture_output=True, text=True, timeout=40)
    later.cancel()
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2.0
    assert "waiting for discovery: PRIMACPP_RANK_IPS: no address yet for rank(s) 1, 2" in (
        result.stderr)
    argv = json.loads(result.stdout)
    assert argv[argv.index("--rpc") + 1] == "10.9.8.7:50052,10.9.8.8:50052"


def test_discovery_gives_up_after_its_timeout(tmp_path: Path, settings: dict[str, str]):
    started = time.monotonic()
    result = _run(tmp_path, {**settings, "PRIMACPP_ENGINE": "rpc", "PRIMACPP_RANK_IPS": ""})
    assert result.returncode == 3
    assert 3.0 <= time.monotonic() - started < 15
    assert "PRIMACPP_RANK_IPS: no address yet" in result.stderr


def test_a_stop_while_waiting_for_peers_is_a_clean_exit(tmp_path: Path,
                                                       settings: dict[str, str]):
    file = _write(tmp_path / "ring.env", {**settings, "PRIMACPP_RANK_IPS": "",
                                          "PRIMACPP_DISCOVERY_TIMEOUT": "60"})
    proc = subprocess.Popen([SYSTEM_PYTHON, str(LAUNCHER), "--settings", str(file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)  # the job's kill_signal
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopped by signal 2 before the engine started" in err
    assert "Traceback" not in err


def _ring(**changes: object) -> object:
    base = {
        "engine": "primacpp", "rank": 0, "world": 3, "layer_window": [10, 10, 10],
        "gpu_layers": 0, "model": "/m.gguf", "prima_bin": "/p", "llama_bin": "/l",
        "data_port": 9000, "signal_port": 10000, "rpc_port": 50052, "api_port": 8080,
        "ctx_size": 4096, "parallel": 2, "threads": 0, "prefetch": True,
        "discovery_timeout": 60, "api_key_file": "/s/api-key", "bind_ip": "10.0.0.1",
    }
    return launch.Ring(**{**base, **changes})


def test_prima_command_lines():
    peers = {"PRIMACPP_MASTER_IP": "10.0.0.1", "PRIMACPP_NEXT_IP": "10.0.0.2"}
    master = launch.command(_ring(), peers)
    assert master == [
        "/p/llama-server", "-m", "/m.gguf", "--world", "3", "--rank", "0",
        "--master", "10.0.0.1", "--next", "10.0.0.2", "--data-port", "9000",
        "--signal-port", "10000", "-ngl", "0", "--prefetch", "-lw", "10,10,10",
        "-c", "4096", "-np", "2", "--host", "10.0.0.1", "--port", "8080",
        "--api-key-file", "/s/api-key"]
    last = launch.command(_ring(rank=2, bind_ip="10.0.0.3", gpu_layers=4, threads=2,
                                prefetch=False),
                          {"PRIMACPP_MASTER_IP": "10.0.0.1", "PRIMACPP_NEXT_IP": "10.0.0.1"})
    assert last == [
        "/p/llama-cli", "-m", "/m.gguf", "--world", "3", "--rank", "2",
        "--master", "10.0.0.1", "--next", "10.0.0.1", "--data-port", "9000",
        "--signal-port", "10000", "-ngl", "4", "-t", "2"]


def test_rpc_command_lines_map_the_layer_window():
    master = launch.command(_ring(engine="rpc", layer_window=[6, 12, 12]),
                            {"PRIMACPP_RANK_IPS": ["10.0.0.2", "10.0.0.3"]})
    assert master[:3] == ["/l/llama-server", "-m", "/m.gguf"]
    assert master[master.index("--rpc") + 1] == "10.0.0.2:50052,10.0.0.3:50052"
    # rank 0 keeps 6 layers; 12 + (12 + output layer) go to the workers.
    assert master[master.index("-ngl") + 1] == "25"
    assert master[master.index("-ts") + 1] == "12,13"
    worker = launch.command(_ring(engine="rpc", rank=1, bind_ip="10.0.0.2"), {})
    assert worker == ["/l/ggml-rpc-server", "--host", "10.0.0.2", "--port", "50052"]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_forwards_sigterm_to_the_engine(tmp_path: Path, settings: dict[str, str]):
    port = free_port()
    file = _write(tmp_path / "ring.env", {**settings, "PRIMACPP_RANK": "1",
                                          "PRIMACPP_RPC_PORT": str(port)})
    proc = subprocess.Popen([SYSTEM_PYTHON, str(LAUNCHER), "--settings", str(file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "ggml-rpc-server never listened"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    assert "starting " in output and "ggml-rpc-server --host 127.0.0.1" in output
    assert code in (0, 128 + signal.SIGTERM)
    assert not _listening(port), "the engine outlived its launcher"
