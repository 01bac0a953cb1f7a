"""A test double of a Nomad agent's service registry: the Nomad agent cannot run here (no
binary is reachable), so this loopback HTTP server answers ``GET /v1/service/<name>`` the way
Nomad's documented API does: a JSON list of registrations with Address and Port, 403 without
the right ACL token."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

TOKEN = "nomad-acl-secret-0123456789"


class NomadDouble(BaseHTTPRequestHandler):
    services: ClassVar[dict[str, list[dict]]] = {}
    seen: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "token": self.headers.get("X-Nomad-Token")})
        if self.headers.get("X-Nomad-Token") != TOKEN:
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"Permission denied")
            return
        name = self.path.split("?")[0].removeprefix("/v1/service/")
        body = json.dumps(self.services.get(name, [])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass
