"""client_double: a test double standing in for the Nomad *client* agents of a ring.

Nomad cannot run here, so this does, for one evaluated job, what the Nomad clients would:
for every group it creates an allocation directory (``local/``, ``secrets/``), renders the
task's templates with a small Consul-template renderer (only the forms the project's jobs
use: ``env``, ``nomadService`` first address/port, ``nomadVar`` items; anything else is an
error), starts the task's command with the job's exact arguments inside the node's network
namespace, registers the group's Nomad-native services while the task runs, re-renders
``change_mode = "noop"`` templates when the registry changes, applies the group's restart
``delay`` when a task dies, and restarts an allocation on request (kill_signal, then
kill_timeout, then SIGKILL), as ``POST /v1/client/allocation/:id/restart`` does.

It is not Nomad: no scheduling, no deployments, no health checks. The code under test
(launcher, watchdog, engines) is real.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobcheck.jobmodel import Block, Job

_GO = re.compile(r"\{\{.*?\}\}", re.S)
_SERVICE_WITH = re.compile(
    r'\{\{\s*with nomadService "([^"]+)"\s*\}\}(.*?)\{\{\s*end\s*\}\}', re.S
)
_FIRST_FIELD = re.compile(r"\{\{\s*\(index \. 0\)\.(Address|Port)\s*\}\}")
_VAR_ITEM = re.compile(
    r'\{\{\s*with nomadVar "([^"]+)"\s*\}\}\{\{\s*\.(\w+)\s*\}\}\{\{\s*end\s*\}\}'
)
_ENV = re.compile(r'\{\{\s*env "([^"]+)"\s*\}\}')


class TemplateError(ValueError):
    """A template uses a construct this double does not render (or a missing variable)."""


def render_client_template(
    text: str,
    *,
    services: dict[str, list[tuple[str, int]]],
    env: dict[str, str],
    variables: dict[str, dict[str, str]],
) -> str:
    """Render Consul-template text the way the Nomad client would, for the supported forms."""

    def service(match: re.Match[str]) -> str:
        regs = services.get(match.group(1), [])
        if not regs:
            return ""  # `with` over an empty list renders nothing
        address, port = regs[0]
        return _FIRST_FIELD.sub(
            lambda f: address if f.group(1) == "Address" else str(port), match.group(2))

    def variable(match: re.Match[str]) -> str:
        path, item = match.group(1), match.group(2)
        if path not in variables:
            raise TemplateError(f"Nomad variable {path} does not exist (Nomad blocks the task)")
        return variables[path].get(item, "")

    def environment(match: re.Match[str]) -> str:
        return env.get(match.group(1), "")

    out = _SERVICE_WITH.sub(service, text)
    out = _VAR_ITEM.sub(variable, out)
    out = _ENV.sub(environment, out)
    leftover = _GO.search(out)
    if leftover:
        raise TemplateError(f"unsupported template construct {leftover.group()!r}")
    return out


def _duration(text: str | int | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a Nomad duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Placement:
    """Where a group runs: a network namespace and the node's cluster address."""

    netns: str
    address: str


@dataclass
class Alloc:
    id: str
    group: Block
    task: Block
    placement: Placement
    root: Path
    create_index: int
    process: subprocess.Popen[bytes] | None = None
    state: str = "pending"
    restarts: int = 0
    started_at: str = ""
    finished_at: str = ""
    failed: bool = False
    last_restart: str = ""
    generation: int = 0
    log_path: Path = field(default_factory=Path)
    lost: bool = False  # its node went away: Nomad marks the allocation lost

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def task_dir(self) -> Path:
        return self.root / self.task.name

    def ports(self) -> dict[str, int]:
        network = self.group.child("network")
        if network is None:
            return {}
        return {p.name: int(p.attrs["static"]) for p in network.children("port")}


class NomadClientDouble:
    """Runs a job's groups as local processes in network namespaces (see module docstring)."""

    def __init__(
        self,
        job: Job,
        placements: dict[str, Placement],
        workdir: Path,
        *,
        variables: dict[str, dict[str, str]],
        command_prefix: Callable[[Block], list[str]] = lambda _task: [],
        extra_env: dict[str, str] | None = None,
        groups: list[str] | None = None,
        identity_token: str = "",
    ) -> None:
        self.job = job
        self.variables = variables
        self.command_prefix = command_prefix
        self.extra_env = dict(extra_env or {})
        self.identity_token = identity_token
        self.lock = threading.RLock()
        self.allocs: dict[str, Alloc] = {}
        self.services: dict[str, list[tuple[str, int]]] = {}
        self.events: list[tuple[float, str]] = []
        self._stop = threading.Event()
        wanted = groups if groups is not None else [g.name for g in job.groups()]
        for index, group in enumerate(g for g in job.groups() if g.name in wanted):
            task = group.children("task")[0]
            alloc = Alloc(
                id=str(uuid.uuid4()), group=group, task=task, placement=placements[group.name],
                root=workdir / group.name, create_index=100 + index,
            )
            (alloc.task_dir / "local").mkdir(parents=True, exist_ok=True)
            (alloc.task_dir / "secrets").mkdir(parents=True, exist_ok=True)
            alloc.log_path = alloc.root / f"{task.name}.log"
            self.allocs[alloc.id] = alloc
        self._monitor = threading.Thread(target=self._watch, name="client-double", daemon=True)

    # -- queries used by the fake Nomad API ----------------------------------------------
    def alloc_json(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for alloc in self.allocs.values():
                status = "running" if alloc.state == "running" else "pending"
                if alloc.lost:
                    status = "lost"
                out.append({
                    "ID": alloc.id, "JobID": self.job.name, "TaskGroup": alloc.name,
                    "Name": f"{self.job.name}.{alloc.name}[0]", "NodeName": alloc.placement.netns,
                    "DesiredStatus": "stop" if alloc.lost else "run", "ClientStatus": status,
                    "CreateIndex": alloc.create_index,
                    "TaskStates": {alloc.task.name: {
                        "State": alloc.state, "Failed": alloc.failed, "Restarts": alloc.restarts,
                        "StartedAt": alloc.started_at, "FinishedAt": alloc.finished_at,
                        "LastRestart": alloc.last_restart,
                    }},
                })
            return out

    def registrations(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"ServiceName": name, "Address": addr, "Port": port, "JobID": self.job.name,
                 "Namespace": "default", "Datacenter": "dc1"}
                for addr, port in self.services.get(name, [])
            ]

    def by_group(self, name: str) -> Alloc:
        """The group's newest allocation (a lost one is replaced when its node returns)."""
        return max((a for a in self.allocs.values() if a.name == name),
                   key=lambda a: a.create_index)

    def node_away(self, group: str) -> Alloc:
        """The node of ``group`` goes away (a laptop sleeps): its task dies with it, its
        services vanish, and Nomad marks the allocation lost (no restart policy applies)."""
        alloc = self.by_group(group)
        self._log(f"node of {alloc.name} went away")
        self._kill_task(alloc)
        with self.lock:
            alloc.lost = True
            alloc.state = "dead"
        return alloc

    def node_back(self, group: str) -> Alloc:
        """The node is back: Nomad places the pinned group there again, as a new allocation."""
        with self.lock:
            old = self.by_group(group)
            assert old.lost, f"{group}'s node is not away"
            new = Alloc(id=str(uuid.uuid4()), group=old.group, task=old.task,
                        placement=old.placement, root=old.root,
                        create_index=max(a.create_index for a in self.allocs.values()) + 1,
                        log_path=old.log_path)
            self.allocs[new.id] = new
            self._log(f"node of {group} is back: new allocation {new.id[:8]}")
            self._start_task(new)
        return new

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            for alloc in self.allocs.values():
                self._start_task(alloc)
        self._monitor.start()

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            allocs = list(self.allocs.values())
        for alloc in allocs:
            self._kill_task(alloc)

    def restart(self, alloc_id: str) -> None:
        """Restart one allocation's task in place, like Nomad's alloc restart API: only a task
        that is currently running is restarted (one waiting out its restart delay is not)."""
        with self.lock:
            alloc = self.allocs[alloc_id]
            if alloc.lost or alloc.state != "running":
                self._log(f"restart requested for {alloc.name}: task not running, ignored")
                return
        self._log(f"restart requested for {alloc.name}")
        self._kill_task(alloc)
        with self.lock:
            alloc.restarts += 1
            alloc.last_restart = _now_iso()
            self._start_task(alloc)

    def engine_pid(self, group: str, timeout: float = 30) -> int:
        """PID of the engine process the launcher of ``group`` started (its child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alloc = self.by_group(group)
            proc = alloc.process
            if proc is not None and proc.poll() is None:
                children = _children(proc.pid)
                if children:
                    return children[0]
            time.sleep(0.2)
        raise TimeoutError(f"no engine process under {group}'s launcher after {timeout}s")

    # -- internals -----------------------------------------------------------------------
    def _log(self, message: str) -> None:
        self.events.append((time.monotonic(), message))

    def _env(self, alloc: Alloc) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NOMAD_ALLOC_ID": alloc.id, "NOMAD_JOB_ID": self.job.name,
            "NOMAD_JOB_NAME": self.job.name, "NOMAD_GROUP_NAME": alloc.name,
            "NOMAD_TASK_NAME": alloc.task.name, "NOMAD_ALLOC_INDEX": "0",
            "NOMAD_TASK_DIR": str(alloc.task_dir / "local"),
            "NOMAD_SECRETS_DIR": str(alloc.task_dir / "secrets"),
            "NOMAD_ALLOC_DIR": str(alloc.root / "alloc"),
        }
        for label, port in alloc.ports().items():
            env[f"NOMAD_IP_{label}"] = alloc.placement.address
            env[f"NOMAD_PORT_{label}"] = str(port)
            env[f"NOMAD_ADDR_{label}"] = f"{alloc.placement.address}:{port}"
        env_block = alloc.task.child("env")
        if env_block is not None:
            env.update({k: self._interpolate(str(v), env) for k, v in env_block.attrs.items()})
        identity = alloc.task.child("identity")
        if identity is not None and identity.attrs.get("env") is True:
            env["NOMAD_TOKEN"] = self.identity_token  # the task's workload identity
        env.update(self.extra_env)
        return env

    def _render_templates(self, alloc: Alloc, *, only_noop: bool) -> None:
        env = self._env(alloc)
        for template in alloc.task.children("template"):
            if only_noop and template.attrs.get("change_mode", "restart") != "noop":
                continue
            text = render_client_template(
                str(template.attrs["data"]), services=self.services, env=env,
                variables=self.variables,
            )
            dest = alloc.task_dir / str(template.attrs["destination"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Heredocs lose their trailing newline in python-hcl2; Nomad keeps it.
            new = text if text.endswith("\n") or "\n" not in text else text + "\n"
            if not dest.exists() or dest.read_text() != new:
                tmp = dest.with_suffix(".tmp")
                tmp.write_text(new)
                os.chmod(tmp, int(str(template.attrs.get("perms", "0644")), 8))
                tmp.replace(dest)

    def _interpolate(self, value: str, env: dict[str, str]) -> str:
        return re.sub(r"\$\{(NOMAD_\w+)\}", lambda m: env.get(m.group(1), ""), value)

    def _start_task(self, alloc: Alloc) -> None:
        env = self._env(alloc)
        self._render_templates(alloc, only_noop=False)
        config = alloc.task.child("config")
        assert config is not None, f"{alloc.name}: task has no config block"
        argv = [str(config.attrs["command"])]
        argv += [self._interpolate(str(a), env) for a in config.attrs.get("args", [])]
        prefix = ["ip", "netns", "exec", alloc.placement.netns]
        log = alloc.log_path.open("ab")
        log.write(f"--- start {' '.join(argv)}\n".encode())
        log.flush()
        alloc.process = subprocess.Popen(
            [*prefix, *self.command_prefix(alloc.task), *argv], cwd=alloc.task_dir, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        alloc.generation += 1
        alloc.state = "running"
        alloc.started_at = _now_iso()
        alloc.failed = False
        self._log(f"{alloc.name} started (pid {alloc.process.pid})")
        self._register(alloc)

    def _register(self, alloc: Alloc) -> None:
        ports = alloc.ports()
        for service in alloc.group.children("service"):
            if service.attrs.get("provider") != "nomad":
                continue
            name = str(service.attrs["name"])
            entry = (alloc.placement.address, ports[str(service.attrs["port"])])
            regs = self.services.setdefault(name, [])
            if entry not in regs:
                regs.append(entry)
        self._rerender()

    def _deregister(self, alloc: Alloc) -> None:
        ports = alloc.ports()
        for service in alloc.group.children("service"):
            name = str(service.attrs["name"])
            entry = (alloc.placement.address, ports[str(service.attrs["port"])])
            if entry in self.services.get(name, []):
                self.services[name].remove(entry)
                if not self.services[name]:
                    del self.services[name]
        self._rerender()

    def _rerender(self) -> None:
        for other in self.allocs.values():
            if other.state == "running":
                self._render_templates(other, only_noop=True)

    def _kill_task(self, alloc: Alloc) -> None:
        with self.lock:
            proc = alloc.process
            alloc.state = "pending"
        if proc is not None and proc.poll() is None:
            kill_signal = getattr(signal, str(alloc.task.attrs.get("kill_signal", "SIGINT")))
            timeout = _duration(alloc.task.attrs.get("kill_timeout", "5s"))
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, kill_signal)  # the task's main process, like Nomad
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        with self.lock:
            alloc.finished_at = _now_iso()
            self._deregister(alloc)

    def _watch(self) -> None:
        """Apply the restart policy's delay to tasks that die on their own."""
        waiting: dict[str, tuple[float, int]] = {}
        while not self._stop.is_set():
            with self.lock:
                for alloc in self.allocs.values():
                    proc = alloc.process
                    if alloc.lost:
                        continue
                    if alloc.state == "running" and proc is not None and proc.poll() is not None:
                        alloc.state = "pending"  # Nomad: waiting out the restart delay
                        alloc.failed = proc.returncode != 0
                        alloc.finished_at = _now_iso()
                        self._log(f"{alloc.name} exited with {proc.returncode}")
                        self._deregister(alloc)
                        restart = alloc.group.child("restart")
                        delay = _duration(restart.attrs.get("delay", "15s")) if restart else 15
                        waiting[alloc.id] = (time.monotonic() + delay, alloc.generation)
                    due = waiting.get(alloc.id)
                    if due and time.monotonic() >= due[0]:
                        del waiting[alloc.id]
                        if alloc.generation == due[1] and alloc.state != "running":
                            alloc.restarts += 1
                            alloc.last_restart = _now_iso()
                            self._log(f"{alloc.name} restarted by its restart policy")
                            self._start_task(alloc)
            time.sleep(0.2)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(FileNotFoundError):
        for task in task_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                kids += [int(p) for p in (task / "children").read_text().split()]
    return kids
