"""A three-rank ring from jobs/primacpp.nomad.hcl on namespaced hosts of this machine.

The job is evaluated like ``nomad job run -var ...`` (jobcheck.jobmodel), each rank group runs in
its own network namespace through the Nomad client double, with the launcher the job names
(the repository's file, run by the system Python: it must be stdlib-only) and the exact
arguments and rendered settings the job gives it. The watchdog group runs in the hub
namespace against the fake Nomad API at the job's default address (127.0.0.1:4646 there).
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobcheck.jobmodel import Block, Job, evaluate_job

from .client_double import NomadClientDouble, Placement
from .fake_nomad import FakeNomad
from .netns import Cluster, call_in, cluster, start_in

ROOT = Path(__file__).resolve().parents[2]
JOB_FILE = ROOT / "jobs" / "primacpp.nomad.hcl"
LAUNCHER = ROOT / "roles" / "primacpp" / "files" / "primacpp-ring-launch"
WATCHDOG = ROOT / "roles" / "primacpp" / "files" / "primacpp-ring-watchdog"
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
WORLD = 3


def ring_overrides(engine: str, model: Path, bin_dir: Path, **extra: Any) -> dict[str, Any]:
    """The -var overrides an operator would pass for this machine's three namespaced nodes."""
    overrides: dict[str, Any] = {
        "engine": engine,
        "ranks": [{"node": f"node{i}", "layers": 10, "gpu_layers": 0, "uid": 0, "gid": 0,
                   "memory_mb": 2048}
                  for i in range(WORLD)],
        "model_path": str(model),
        "launcher": str(LAUNCHER),
        "watchdog": str(WATCHDOG),
        "ctx_size": 1024,
        "parallel": 1,
        "threads": 1,
        "discovery_timeout": 120,
    }
    overrides["llamacpp_bin_dir" if engine == "rpc" else "primacpp_bin_dir"] = str(bin_dir)
    overrides.update(extra)
    return overrides


def _command_prefix(task: Block) -> list[str]:
    # The launcher runs under the nodes' system Python; the watchdog under a venv holding
    # python-nomad (the role installs it with its venv's interpreter).
    return [SYSTEM_PYTHON] if task.name == "rank" else [sys.executable]


@dataclass
class RingRun:
    job: Job
    net: Cluster
    client: NomadClientDouble
    fake: FakeNomad
    api_key: str
    started: float

    @property
    def api_base(self) -> str:
        regs = self.client.registrations("primacpp-api")
        assert regs, "primacpp-api is not registered"
        return f"http://{regs[0]['Address']}:{regs[0]['Port']}"

    def in_hub(self, func: Any, *args: Any, timeout: float = 300) -> Any:
        return call_in(self.net.hub, func, *args, timeout=timeout)

    def complete(self, prompt: str = "ping", max_tokens: int = 1,
                 timeout: float = 10) -> dict[str, Any]:
        """One chat completion from the hub (the 'client node'), with a timeout."""
        body = json.dumps({"messages": [{"role": "user", "content": prompt}],
                           "max_tokens": max_tokens, "temperature": 0})
        request = urllib.request.Request(
            f"{self.api_base}/v1/chat/completions", data=body.encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {self.api_key}"})

        def call() -> dict[str, Any]:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())

        return self.in_hub(call, timeout=timeout + 5)

    def wait_answering(self, deadline_s: float, per_try: float = 10) -> float:
        """Seconds until a one-token completion succeeds (raises TimeoutError at the end)."""
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < deadline_s:
            try:
                if self.client.registrations("primacpp-api") and self.complete(
                    timeout=per_try
                ).get("choices"):
                    return time.monotonic() - start
            except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise TimeoutError(f"the ring did not answer within {deadline_s}s (last: {last})")

    def logs(self) -> str:
        out = []
        for alloc in self.client.allocs.values():
            text = alloc.log_path.read_text(errors="replace") if alloc.log_path.exists() else ""
            out.append(f"===== {alloc.name} =====\n" + "\n".join(text.splitlines()[-40:]))
        return "\n".join(out)


@contextmanager
def ring(engine: str, model: Path, bin_dir: Path, workdir: Path, *, watchdog: bool = False,
         subnet: str = "10.231.77", **extra: Any) -> Iterator[RingRun]:
    """Start the job's ranks (and optionally its watchdog) on three namespaced nodes."""
    job = evaluate_job(JOB_FILE, ring_overrides(engine, model, bin_dir, **extra))
    api_key = secrets.token_urlsafe(24)
    token = secrets.token_hex(16)
    groups = [f"rank-{i}" for i in range(WORLD)] + (["watchdog"] if watchdog else [])
    with cluster(WORLD, subnet=subnet) as net:
        placements = {f"rank-{i}": Placement(net.nodes[i], net.node_ip(i)) for i in range(WORLD)}
        placements["watchdog"] = Placement(net.hub, net.hub_ip)
        client = NomadClientDouble(
            job, placements, workdir, groups=groups, command_prefix=_command_prefix,
            variables={str(job.variables["api_key_var"]): {"api_key": api_key}},
            identity_token=token,
        )
        fake = FakeNomad(client, token)
        host, port = _split_addr(str(job.variables["nomad_addr"]))
        start_in(net.hub, lambda: fake.serve(host, port))
        if not fake.ready.wait(10):
            raise RuntimeError("the fake Nomad API did not start")
        started = time.monotonic()
        try:
            client.start()
            yield RingRun(job, net, client, fake, api_key, started)
        finally:
            client.stop()
            fake.shutdown()
            for alloc in client.allocs.values():
                if alloc.log_path.exists():
                    shutil.copy(alloc.log_path, workdir / f"{alloc.name}.final.log")


def _split_addr(addr: str) -> tuple[str, int]:
    hostport = addr.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.partition(":")
    return host, int(port or 4646)
