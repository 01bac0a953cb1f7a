"""The llama.cpp ``llama-server`` process of the one-machine default.

``llama_bin_dir()`` finds the binaries (``LLAMA_SERVER_BIN``, the cache, or a build through
``scripts/build-llama-server.sh``); ``LlamaServer`` runs one server on a GGUF file and stops
it cleanly (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import platform
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from pipecatapp.embedded.models import cache_dir
from pipecatapp.errors import ConfigError, EngineUnavailable

_ROOT = Path(__file__).resolve().parents[2]
_BUILD_SCRIPT = _ROOT / "scripts" / "build-llama-server.sh"
_PIN_FILE = _ROOT / "requirements-llamacpp.txt"
_LIVE: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


def llama_cpp_version() -> str:
    """The llama-cpp-python release pinned in requirements-llamacpp.txt (its llama.cpp tree is
    what the build script builds), or ``LLAMA_CPP_PYTHON_VERSION`` when set, as the script does."""
    override = os.environ.get("LLAMA_CPP_PYTHON_VERSION")
    if override:
        return override
    try:
        text = _PIN_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        raise EngineUnavailable(f"cannot read the llama.cpp pin {_PIN_FILE}: {exc}") from exc
    match = re.search(r"^llama-cpp-python==(\S+)\s*$", text, re.MULTILINE)
    if not match:
        raise EngineUnavailable(f"no 'llama-cpp-python==X.Y.Z' line in {_PIN_FILE}")
    return match.group(1)


def llama_bin_dir(*, build: bool = True) -> Path:
    """Directory holding ``llama-server`` (and ``ggml-rpc-server`` for RPC).

    Order: ``LLAMA_SERVER_BIN`` (a path to the user's llama-server), the cached portable build
    in ``$PIPECATAPP_CACHE_DIR/llama.cpp/<version>-portable-<arch>/bin``, else build it now
    (about ten minutes; the script prints progress on stderr, and runs the result once)
    unless ``build`` is false.
    """
    user_bin = os.environ.get("LLAMA_SERVER_BIN")
    if user_bin:
        path = Path(user_bin).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError("LLAMA_SERVER_BIN", f"{path} is not an executable llama-server")
        return path.parent
    key = f"{llama_cpp_version()}-portable-{platform.machine()}"
    cached = cache_dir() / "llama.cpp" / key / "bin"
    if (cached / "llama-server").is_file() and (cached / ".build-stamp").is_file():
        return cached
    if not build:
        raise EngineUnavailable(
            f"no llama-server in {cached}: run scripts/build-llama-server.sh "
            "or set LLAMA_SERVER_BIN to your llama-server"
        )
    if not _BUILD_SCRIPT.is_file():
        raise EngineUnavailable(
            f"no llama-server in {cached} and no build script beside this package: "
            "set LLAMA_SERVER_BIN to your llama-server"
        )
    result = subprocess.run(
        ["bash", str(_BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not (Path(lines[-1]) / "llama-server").is_file():
        raise EngineUnavailable(
            f"building llama-server failed (exit {result.returncode}); see the messages above, "
            "or set LLAMA_SERVER_BIN to an existing llama-server"
        )
    return Path(lines[-1])


def _exit_reason(code: int) -> str:
    """``exited with status N``, or the signal that killed it with the likely cause."""
    if code >= 0:
        return f"exited with status {code}"
    name = signal.Signals(-code).name
    if -code == signal.SIGILL:
        return (f"was killed by {name} (illegal instruction: it was built for another CPU; "
                "rebuild it with scripts/build-llama-server.sh, whose portable build runs on "
                "any CPU)")
    return f"was killed by {name}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: ask the kernel to SIGTERM it when the starting thread exits."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def batch_threads(setting: int) -> int:
    """``llm.embedded_batch_threads`` as a thread count: 0 is every core this process may
    use, at most 8 (a voice turn's prompt is a few dozen tokens)."""
    if setting:
        return setting
    return max(1, min(8, len(os.sched_getaffinity(0))))


class LlamaServer:
    """One ``llama-server`` process serving ``model`` on an OpenAI-compatible API.

    ``threads`` are the generation threads, and the batch (prompt evaluation) threads unless
    ``batch_threads`` is given. On a busy 2-core machine 2 threads collapse (spinning workers
    fight for the cores): 1 thread is the safe default; see the README (Benchmarks). The
    prompt of a voice turn is evaluated while the app's other engines are idle, so
    ``batch_threads`` may take every core. ``poll`` is llama.cpp's ``--poll`` (0 = workers
    sleep instead of spinning). ``cache_reuse`` is ``--cache-reuse``: a prompt whose start changed
    reuses cached chunks of at least this many tokens by shifting them, so the turn after the
    app cuts back its history (``llm.max_history``) evaluates only its new tokens (0: off).
    ``cache_ram`` is ``--cache-ram`` in MiB (llama-server's default 8192; -1: no limit). It is
    off (0) here: that cache restores the saved prompt with the longest common start, which
    after a history cut can be another conversation's that asked the same question, and that
    prompt has nothing to shift, so the whole history is evaluated again. One conversation
    never needs it: its own slot always holds its longest prompt.
    The server's output goes to ``log_path``.
    """

    def __init__(
        self,
        model: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 1,
        batch_threads: int | None = None,
        ctx: int = 2048,
        extra_args: Sequence[str] = (),
        parallel: int = 1,
        poll: int | None = None,
        cache_reuse: int = 32,
        cache_ram: int = 0,
        binary: Path | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if threads < 1:
            raise ConfigError("threads", f"must be at least 1, got {threads}")
        if batch_threads is not None and batch_threads < 1:
            raise ConfigError("batch_threads", f"must be at least 1, got {batch_threads}")
        if ctx < 64:
            raise ConfigError("ctx", f"must be at least 64 tokens, got {ctx}")
        if not 0 <= port <= 65535:
            raise ConfigError("port", f"must be 0 (any free port) to 65535, got {port}")
        self.model = Path(model)
        self.host = host
        self.requested_port = port
        self.port = port
        self.threads = threads
        self.batch_threads = batch_threads or threads
        self.ctx = ctx
        self.extra_args = tuple(extra_args)
        self.parallel = parallel
        self.poll = poll
        if cache_reuse < 0:
            raise ConfigError("cache_reuse", f"must be 0 (off) or more tokens, got {cache_reuse}")
        self.cache_reuse = cache_reuse
        if cache_ram < -1:
            raise ConfigError("cache_ram",
                              f"must be -1 (no limit), 0 (off) or MiB, got {cache_ram}")
        self.cache_ram = cache_ram
        self.binary = binary
        self.env = dict(env or {})
        self.log_path = log_path
        self._auto_log = log_path is None  # a log we created is removed after a clean stop
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://host:port/v1``."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle -----------------------------------------------------------------------
    def command(self) -> list[str]:
        binary = self.binary or (llama_bin_dir() / "llama-server")
        cmd = [
            str(binary), "-m", str(self.model), "--host", self.host, "--port", str(self.port),
            "-t", str(self.threads), "-tb", str(self.batch_threads), "-c", str(self.ctx),
            "-np", str(self.parallel), "--no-webui",
        ]
        if self.poll is not None:
            cmd += ["--poll", str(self.poll)]
        if self.cache_reuse:
            cmd += ["--cache-reuse", str(self.cache_reuse)]
        cmd += ["--cache-ram", str(self.cache_ram)]
        return cmd + list(self.extra_args)

    def start(self) -> LlamaServer:
        if self.running():
            return self
        if not self.model.is_file():
            raise ConfigError("model", f"{self.model} does not exist")
        if self.requested_port == 0:
            self.port = free_port(self.host)
        if self.log_path is None:
            logs = cache_dir() / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"llama-server-{self.port}-", suffix=".log",
                                        dir=logs)
            os.close(fd)
            self.log_path = Path(name)
        cmd = self.command()
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        in_main = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=_die_with_parent if in_main else None,
        )
        _LIVE.add(self)
        return self

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, timeout: float = 60.0) -> LlamaServer:
        """Block until ``/health`` answers 200; fail fast with the log tail if it dies."""
        if self._proc is None:
            raise RuntimeError("LlamaServer.wait_ready() before start()")
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                if self.requested_port == 0 and "bind" in tail.lower() and attempts < 3:
                    attempts += 1  # lost a race for the free port: pick another
                    self._close_log()
                    self._proc = None
                    self.start()
                    continue
                raise EngineUnavailable(
                    f"llama-server {_exit_reason(code)} while starting "
                    f"(log {self.log_path}):\n{tail}"
                )
            try:
                with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self._auto_log = False  # keep the log: the message points to it
                self.stop()
                raise EngineUnavailable(
                    f"llama-server did not become ready within {timeout:.0f} s "
                    f"(log {self.log_path}):\n{tail}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds.

        A log file this object created itself is deleted when the server was running until
        now (a clean stop); it is kept when the server had died, for the post-mortem."""
        proc = self._proc
        clean = proc is not None and proc.poll() is None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=grace)
        self._proc = None
        self._close_log()
        _LIVE.discard(self)
        if clean and self._auto_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def _close_log(self) -> None:
        log = self._log_file
        self._log_file = None
        if log is not None:
            log.close()

    def __enter__(self) -> LlamaServer:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"LlamaServer(model={self.model.name!r}, url={self.root_url!r}, "
                f"threads={self.threads}, running={self.running()})")


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(grace=2.0)
