"""LLM discovery through Nomad's service registry (python-nomad).

The Nomad agent cannot run here (no binary reachable), so these tests use ``fake_nomad``: a
test double, a loopback HTTP server answering ``GET /v1/service/<name>`` the way Nomad's
documented API does (a JSON list of registrations with Address and Port).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pipecatapp.config import LLMConfig
from pipecatapp.discovery import nomad_llm_url
from pipecatapp.errors import EngineUnavailable

TOKEN = "nomad-acl-secret-0123456789"


class _NomadDouble(BaseHTTPRequestHandler):
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


@pytest.fixture
def fake_nomad() -> Iterator[str]:
    """Test double of a Nomad agent's service registry on loopback; yields its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NomadDouble)
    _NomadDouble.seen = []
    _NomadDouble.services = {
        "primacpp-api": [
            {"ServiceName": "primacpp-api", "Address": "10.77.0.2", "Port": 8080, "Tags": []},
        ],
        "v6-llm": [{"ServiceName": "v6-llm", "Address": "fd00::2", "Port": 9000}],
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_finds_the_llm_service(fake_nomad):
    cfg = LLMConfig(nomad_addr=fake_nomad, nomad_token=TOKEN)
    assert nomad_llm_url(cfg) == "http://10.77.0.2:8080/v1"
    assert _NomadDouble.seen[-1]["path"].startswith("/v1/service/primacpp-api")
    assert _NomadDouble.seen[-1]["token"] == TOKEN


def test_ipv6_address_is_bracketed(fake_nomad):
    cfg = LLMConfig(nomad_addr=fake_nomad, nomad_token=TOKEN, service="v6-llm")
    assert nomad_llm_url(cfg) == "http://[fd00::2]:9000/v1"


def test_missing_service_names_it(fake_nomad):
    cfg = LLMConfig(nomad_addr=fake_nomad, nomad_token=TOKEN, service="nope")
    with pytest.raises(EngineUnavailable, match=r"service 'nope'.*no registration"):
        nomad_llm_url(cfg)


def test_refused_token_is_not_echoed(fake_nomad):
    cfg = LLMConfig(nomad_addr=fake_nomad, nomad_token="wrong-token-abcdef")
    with pytest.raises(EngineUnavailable) as err:
        nomad_llm_url(cfg)
    assert "HTTP 403" in str(err.value)
    assert "wrong-token-abcdef" not in str(err.value)


def test_unreachable_nomad():
    cfg = LLMConfig(nomad_addr="http://127.0.0.1:9", nomad_token=TOKEN)
    with pytest.raises(EngineUnavailable, match="unreachable"):
        nomad_llm_url(cfg)
