"""fake_nomad: a test double that stands in for the Nomad agent's HTTP API.

Nomad cannot run on this machine, so the watchdog (real code, real python-nomad) talks to
this small server instead. It implements only the endpoints the watchdog calls, with the
JSON fields it reads, and enforces the ACL capabilities of the watchdog's policy
(jobs/primacpp-watchdog.policy.hcl) the way Nomad documents them:

    GET  /v1/job/:job_id                    read-job        (job's task groups)
    GET  /v1/job/:job_id/allocations        read-job        (allocations + task states)
    GET  /v1/service/:service_name          read-job        (Nomad-native registrations)
    POST /v1/client/allocation/:id/restart  alloc-lifecycle (restarts the ring processes
                                                             through the client double)

A wrong or missing X-Nomad-Token gets 403, any other path 404; both are recorded in
``refused`` so a test can assert the watchdog needed nothing more.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .client_double import NomadClientDouble

CAPABILITY = {
    ("GET", re.compile(r"^/v1/job/([^/]+)$")): "read-job",
    ("GET", re.compile(r"^/v1/job/([^/]+)/allocations$")): "read-job",
    ("GET", re.compile(r"^/v1/service/([^/]+)$")): "read-job",
    ("POST", re.compile(r"^/v1/client/allocation/([^/]+)/restart$")): "alloc-lifecycle",
}


class FakeNomad:
    """The fake API; ``serve()`` blocks (run it in a thread inside the hub namespace)."""

    def __init__(self, client: NomadClientDouble, token: str,
                 capabilities: frozenset[str] = frozenset({"read-job", "alloc-lifecycle"})) -> None:
        self.client = client
        self.token = token
        self.capabilities = capabilities
        self.calls: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str, int]] = []
        self.restarts: list[tuple[str, str]] = []
        self.server: ThreadingHTTPServer | None = None
        self.ready = threading.Event()

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fake.calls.append((method, path))
                for (verb, pattern), capability in CAPABILITY.items():
                    match = pattern.match(path)
                    if verb != method or not match:
                        continue
                    if self.headers.get("X-Nomad-Token") != fake.token or (
                        capability not in fake.capabilities
                    ):
                        fake.refused.append((method, path, 403))
                        self._reply(403, "Permission denied")
                        return
                    self._reply(*fake.answer(method, path, match.group(1)))
                    return
                fake.refused.append((method, path, 404))
                self._reply(404, f"no such endpoint in the fake: {method} {path}")

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.ready.set()
        self.server.serve_forever(poll_interval=0.2)

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def answer(self, method: str, path: str, ident: str) -> tuple[int, Any]:
        job = self.client.job
        if path.startswith("/v1/service/"):
            return 200, self.client.registrations(ident)
        if path.startswith("/v1/job/"):
            if ident != job.name:
                return 404, "job not found"
            if path.endswith("/allocations"):
                return 200, self.client.alloc_json()
            return 200, {"ID": job.name, "Name": job.name, "Type": "service",
                         "TaskGroups": [{"Name": g.name, "Count": 1} for g in job.groups()]}
        # POST /v1/client/allocation/:id/restart: answer at once, restart in the background.
        if ident not in self.client.allocs:
            return 404, "alloc not found"
        if self.client.allocs[ident].lost:
            return 500, "Unknown node: the allocation's node is down"
        self.restarts.append((ident, self.client.allocs[ident].name))
        threading.Thread(target=self.client.restart, args=(ident,), daemon=True).start()
        return 200, {}
