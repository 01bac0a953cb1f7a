"""Namespaced "hosts" on this machine: one network namespace per ring node.

Layout (everything exists only inside namespaces this module creates):

    hub namespace: bridge br0 with HUB_IP (the "client node": test clients, fake Nomad, watchdog)
    node namespaces n0..nN-1: veth into the bridge, address SUBNET.(10+i)

Threads can enter a namespace (setns is per thread on Linux), so test code can run an
HTTP client or server "on" a node without touching the host's own network.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=20)


def can_make_namespaces() -> str | None:
    """None when this process may create network namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip command"
    probe = f"pcprobe{secrets.token_hex(3)}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Cluster:
    """A hub namespace with a bridge and ``size`` node namespaces on a private /24."""

    size: int
    subnet: str = "10.231.77"
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hub: str = ""
    nodes: list[str] = field(default_factory=list)

    @property
    def hub_ip(self) -> str:
        return f"{self.subnet}.1"

    def node_ip(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    def up(self) -> Cluster:
        self.hub = f"pch{self.tag}"
        _ip("netns", "add", self.hub)
        _ip("link", "set", "lo", "up", ns=self.hub)
        _ip("link", "add", "br0", "type", "bridge", ns=self.hub)
        _ip("addr", "add", f"{self.hub_ip}/24", "dev", "br0", ns=self.hub)
        _ip("link", "set", "br0", "up", ns=self.hub)
        for index in range(self.size):
            name = f"pcn{self.tag}{index}"
            self.nodes.append(name)
            _ip("netns", "add", name)
            _ip("link", "set", "lo", "up", ns=name)
            outer, inner = f"pv{self.tag}{index}", f"pw{self.tag}{index}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", self.hub)
            _ip("link", "set", inner, "netns", name)
            _ip("link", "set", outer, "master", "br0", ns=self.hub)
            _ip("link", "set", outer, "up", ns=self.hub)
            _ip("link", "set", inner, "name", "eth0", ns=name)
            _ip("addr", "add", f"{self.node_ip(index)}/24", "dev", "eth0", ns=name)
            _ip("link", "set", "eth0", "up", ns=name)
        return self

    def down(self) -> None:
        """Kill whatever still runs inside the namespaces, then delete them."""
        for name in [*self.nodes, self.hub]:
            if not name:
                continue
            pids = _ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _ip("netns", "del", name, check=False)
        self.nodes.clear()
        self.hub = ""

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


@contextlib.contextmanager
def cluster(size: int, subnet: str = "10.231.77") -> Iterator[Cluster]:
    net = Cluster(size=size, subnet=subnet)
    try:
        yield net.up()
    finally:
        net.down()


def _setns(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
    finally:
        os.close(fd)


def call_in(ns: str, func: Callable[..., T], *args: Any, timeout: float = 300) -> T:
    """Run ``func(*args)`` in a fresh thread inside namespace ``ns`` and return its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            _setns(ns)
            box["value"] = func(*args)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"in-{ns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{func.__name__} in namespace {ns} did not finish in {timeout}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def start_in(ns: str, func: Callable[[], None]) -> threading.Thread:
    """Start a daemon thread running ``func`` inside namespace ``ns`` (e.g. a server)."""
    ready = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _setns(ns)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        func()

    thread = threading.Thread(target=target, name=f"srv-{ns}", daemon=True)
    thread.start()
    ready.wait(10)
    if failure:
        raise failure[0]
    return thread


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Move the calling thread into namespace ``ns`` and back (for code that must run on the
    main thread, e.g. pipecat's runner, which installs signal handlers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        _setns(ns)
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the original namespace")
    finally:
        os.close(home)
