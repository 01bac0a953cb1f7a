"""The deploy role (the playbook's `deploy` tag) against a test double of Nomad's HTTP API
(FakeNomadDeploy below; Nomad cannot run here): the API key is stored once, the
two ACL policies are attached to the jobs' workload identities, both jobs are parsed (the ring
with the rendered variables file) and run; a second run rewrites nothing it does not need to,
and no secret appears in the play's output."""

from __future__ import annotations

import json
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from jobcheck.jobmodel import JobFileError, evaluate_job, load_var_file

TOKEN = "0f4c8a52-7d1e-4b9a-8c3f-2e6d5a7b9c10"  # a test value, not a real token


class FakeNomadDeploy:
    """Test double of the Nomad HTTP API calls the deploy role makes (Nomad cannot run here).

    It answers on loopback GET /v1/status/leader, GET/PUT /v1/var/:path, GET/POST
    /v1/acl/policy/:name, POST /v1/jobs/parse and POST /v1/jobs; requires the management
    token; keeps what it was given; and evaluates submitted job files with the project's own
    HCL evaluator (jobcheck.jobmodel) and the Variables text sent with them, as `nomad job run
    -var-file` would, so a wrong variables file is refused as Nomad refuses it.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str]] = []
        self.variables: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.policy_writes = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeNomadDeploy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def parse(self, body: dict[str, Any]) -> tuple[int, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            job_file = Path(tmp) / "job.nomad.hcl"
            job_file.write_text(body.get("JobHCL", ""))
            overrides = None
            if body.get("Variables"):
                vars_file = Path(tmp) / "vars.hcl"
                vars_file.write_text(body["Variables"])
                overrides = load_var_file(vars_file)
            try:
                job = evaluate_job(job_file, overrides)
            except JobFileError as exc:
                return 400, str(exc)
        groups = [{"Name": g.name} for g in job.groups()]
        return 200, {"ID": job.name, "Name": job.name, "TaskGroups": groups,
                     "Meta": {k: str(v) for k, v in (job.body.child("meta").attrs.items()
                                                     if job.body.child("meta") else [])}}

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/status/leader" and method == "GET":
            return 200, "127.0.0.1:4647"
        match = re.match(r"^/v1/var/(.+)$", path)
        if match:
            if method == "GET":
                found = self.variables.get(match[1])
                return (200, found) if found else (404, "variable not found")
            self.variables[match[1]] = body
            return 200, body
        match = re.match(r"^/v1/acl/policy/([^/]+)$", path)
        if match:
            if method == "GET":
                found = self.policies.get(match[1])
                return (200, found) if found else (404, "ACL policy not found")
            self.policies[match[1]] = body
            self.policy_writes += 1
            return 200, None
        if path == "/v1/jobs/parse" and method == "POST":
            return self.parse(body)
        if path == "/v1/jobs" and method == "POST":
            job = body["Job"]
            self.jobs[job["ID"]] = job
            return 200, {"EvalID": f"eval-{job['ID']}"}
        return 404, f"no such endpoint in the fake: {method} {path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def _handle(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.calls.append((method, path))
                if path != "/v1/status/leader" and self.headers.get("X-Nomad-Token") != fake.token:
                    status, out = 403, "Permission denied"
                else:
                    status, out = fake.answer(method, path, json.loads(raw) if raw else None)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        return Handler



def _play(tmp_path: Path, addr: str, repo: Path) -> tuple[Path, Path]:
    inventory = {"all": {
        "vars": {"ansible_connection": "local",
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"nomad_servers": {"hosts": {"server1": None}}}}}
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    play = [{
        "name": "Deploy through the fake API",
        "hosts": "nomad_servers[0]",
        "gather_facts": False,
        "roles": [{"role": "deploy", "vars": {
            "deploy_nomad_addr": addr,
            "deploy_nomad_token": TOKEN,
            "deploy_ring_vars_file": str(repo / "jobs" / "ring.vars.example.hcl"),
            "deploy_jobs_dir": str(repo / "jobs"),
            "deploy_leader_wait_s": 0,
        }}],
    }]
    (tmp_path / "deploy.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    return tmp_path / "inventory.yaml", tmp_path / "deploy.yml"


def _changed(output: str) -> int:
    match = re.search(r"^server1\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output,
                      re.M)
    assert match, output[-4000:]
    return int(match.group(1))


def test_deploy_stores_the_key_applies_policies_and_runs_both_jobs(
    ansible_tools: SimpleNamespace, tmp_path: Path
) -> None:
    with FakeNomadDeploy(TOKEN) as fake:
        inventory, play = _play(tmp_path, fake.address, ansible_tools.repo)
        first = ansible_tools.run(
            [ansible_tools.tool("ansible-playbook"), "-i", str(inventory), str(play)],
            timeout=300)
        assert first.returncode == 0, first.stdout[-6000:]
        key = fake.variables["nomad/jobs/primacpp"]["Items"]["api_key"]
        assert len(key) >= 32
        assert sorted(fake.policies) == ["pipecatapp-llm-key", "primacpp-watchdog"]
        assert fake.policies["primacpp-watchdog"]["JobACL"] == {
            "Namespace": "default", "JobID": "primacpp", "Group": "watchdog", "Task": "watchdog"}
        assert fake.policies["pipecatapp-llm-key"]["JobACL"] == {
            "Namespace": "default", "JobID": "pipecatapp"}
        assert fake.policies["primacpp-watchdog"]["Rules"].strip() == (
            ansible_tools.repo / "jobs" / "primacpp-watchdog.policy.hcl").read_text().strip()
        ring = fake.jobs["primacpp"]
        assert [g["Name"] for g in ring["TaskGroups"]] == [
            "rank-0", "rank-1", "rank-2", "watchdog"]
        assert ring["Meta"]["model_sha256"].startswith("b179c952")
        assert "pipecatapp" in fake.jobs
        assert "evaluation eval-primacpp" in first.stdout
        for secret in (TOKEN, key):
            assert secret not in first.stdout

        writes = fake.policy_writes
        again = ansible_tools.run(
            [ansible_tools.tool("ansible-playbook"), "-i", str(inventory), str(play)],
            timeout=300)
        assert again.returncode == 0, again.stdout[-6000:]
        assert fake.variables["nomad/jobs/primacpp"]["Items"]["api_key"] == key  # kept
        assert fake.policy_writes == writes  # unchanged policies are not rewritten
        assert _changed(again.stdout) == 1  # only the job submission (Nomad decides if it differs)
        for secret in (TOKEN, key):
            assert secret not in again.stdout
