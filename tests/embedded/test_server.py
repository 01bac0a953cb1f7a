"""LlamaServer with the real llama-server on the tiny GGUF: readiness, streaming, stopping,
and the errors a user sees."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from pipecatapp import cli
from pipecatapp.config import load_config
from pipecatapp.embedded.server import LlamaServer, batch_threads, llama_bin_dir
from pipecatapp.errors import ConfigError, EngineUnavailable


def _post(url: str, body: dict, timeout: float = 30) -> urllib.request.addinfourl:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(request, timeout=timeout)


def test_streams_chat_completions(tiny_server: LlamaServer) -> None:
    assert tiny_server.base_url == f"http://127.0.0.1:{tiny_server.port}/v1"
    assert tiny_server.port > 0
    body = {
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": True, "max_tokens": 24, "temperature": 0,
    }
    deltas: list[str] = []
    finish = None
    done = False
    with _post(f"{tiny_server.base_url}/chat/completions", body) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                break
            choice = json.loads(payload)["choices"][0]
            deltas.append(choice["delta"].get("content") or "")
            finish = choice.get("finish_reason") or finish
    text = "".join(deltas)
    assert done
    assert sum(1 for d in deltas if d) >= 5, deltas  # several chunks, not one blob
    assert finish == "length"  # bounded by max_tokens at temperature 0 (it never says EOS)
    assert text.strip() and text.isprintable()


def test_temperature_zero_is_repeatable(tiny_server: LlamaServer) -> None:
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16,
            "temperature": 0}
    answers = []
    for _ in range(2):
        with _post(f"{tiny_server.base_url}/chat/completions", body) as response:
            answers.append(json.load(response)["choices"][0]["message"]["content"])
    assert answers[0] == answers[1] != ""


def test_stop_terminates_the_process_and_frees_the_port(tiny_gguf: Path, llama_bin: Path,
                                                        tmp_path: Path) -> None:
    server = LlamaServer(tiny_gguf, binary=llama_bin / "llama-server",
                         log_path=tmp_path / "log.txt")
    with server:
        pid = server.pid
        assert pid is not None and server.running()
    assert not server.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.root_url}/health", timeout=2)
    assert "listening on http://127.0.0.1" in (tmp_path / "log.txt").read_text()


def test_two_servers_get_different_free_ports(tiny_gguf: Path, llama_bin: Path) -> None:
    binary = llama_bin / "llama-server"
    with LlamaServer(tiny_gguf, binary=binary) as a, LlamaServer(tiny_gguf, binary=binary) as b:
        assert a.port != b.port


def test_broken_model_fails_fast_with_the_log_tail(llama_bin: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    server = LlamaServer(bad, binary=llama_bin / "llama-server").start()
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="exited with status") as info:
        server.wait_ready(timeout=60)
    assert time.monotonic() - started < 20
    assert "bad.gguf" in str(info.value)  # the server's own log lines are in the message


def test_missing_model_and_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model:"):
        LlamaServer(tmp_path / "nope.gguf").start()
    with pytest.raises(ConfigError, match=r"^threads:"):
        LlamaServer(tmp_path / "x.gguf", threads=0)
    with pytest.raises(ConfigError, match=r"^port:"):
        LlamaServer(tmp_path / "x.gguf", port=70000)
    with pytest.raises(ConfigError, match=r"^cache_ram:"):
        LlamaServer(tmp_path / "x.gguf", cache_ram=-2)
    with pytest.raises(ConfigError, match=r"^batch_threads:"):
        LlamaServer(tmp_path / "x.gguf", batch_threads=0)


def test_llama_server_bin_env(monkeypatch: pytest.MonkeyPatch, llama_bin: Path,
                              tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(llama_bin / "llama-server"))
    assert llama_bin_dir() == llama_bin
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^LLAMA_SERVER_BIN:"):
        llama_bin_dir()


def test_cache_without_build_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.setenv("PIPECATAPP_CACHE_DIR", str(tmp_path))
    with pytest.raises(EngineUnavailable, match=r"build-llama-server.sh"):
        llama_bin_dir(build=False)


def test_stop_kills_a_process_that_ignores_sigterm(tiny_gguf: Path, tmp_path: Path) -> None:
    """term_ignoring_double: a shell script standing in for a hung llama-server (a real one
    exits on SIGTERM), to check the SIGKILL fallback."""
    script = tmp_path / "term_ignoring_double"
    ready = tmp_path / "trap-installed"
    script.write_text(f"#!/bin/bash\ntrap '' TERM\ntouch {ready}\nwhile true; do sleep 0.1; done\n")
    script.chmod(0o755)
    server = LlamaServer(tiny_gguf, binary=script).start()
    for _ in range(100):
        if ready.exists():
            break
        time.sleep(0.05)
    assert ready.exists()
    started = time.monotonic()
    server.stop(grace=0.5)
    assert not server.running()
    assert 0.4 < time.monotonic() - started < 5


def test_own_log_is_removed_after_a_clean_stop(tiny_gguf: Path, llama_bin: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("PIPECATAPP_CACHE_DIR", str(tmp_path))
    with LlamaServer(tiny_gguf, binary=llama_bin / "llama-server") as server:
        log = server.log_path
        assert log is not None and log.parent == tmp_path / "logs" and log.is_file()
    assert not log.exists()


def _children_args(name: str) -> list[list[str]]:
    """The command lines of this process's children called ``name`` (other tests' servers
    may be among them)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != os.getpid():
                continue
            args = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue  # the process has gone
        if args and Path(args[0].decode()).name == name:
            found.append([a.decode() for a in args if a])
    return found


@pytest.mark.parametrize(("profile", "expected"), [("tuned", None), ("stock", 1)])
def test_the_embedded_server_evaluates_prompts_on_the_profiles_threads(
    profile: str, expected: int | None, tiny_gguf: Path, llama_bin: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server the app itself starts in embedded mode, as its process was started.
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(llama_bin / "llama-server"))
    cfg = load_config(environ={"PIPECATAPP_PROFILE": profile},
                      overrides={"llm.embedded_model": str(tiny_gguf)})
    with contextlib.ExitStack() as stack:
        url = cli.embedded_llm(cfg.llm, stack)
        port = url.removesuffix("/v1").rsplit(":", 1)[1]
        (args,) = [a for a in _children_args("llama-server") if a[a.index("--port") + 1] == port]
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as answer:
            assert answer.status == 200
    cores = len(os.sched_getaffinity(0))
    wanted = expected or min(8, cores)
    assert batch_threads(cfg.llm.embedded_batch_threads) == wanted
    assert args[args.index("-t") + 1] == "1"
    assert args[args.index("-tb") + 1] == str(wanted)
    assert args[args.index("--cache-ram") + 1] == "0"
    assert batch_threads(3) == 3
