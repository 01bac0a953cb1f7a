"""Fixtures of the app tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from tests.app.nomad_double import NomadDouble


@pytest.fixture
def fake_nomad() -> Iterator[str]:
    """Test double of a Nomad agent's service registry (the agent cannot run here): a
    loopback HTTP server answering ``GET /v1/service/<name>`` as Nomad's documented API does
    (a JSON list of registrations with Address and Port). Yields its address; register more
    services in ``NomadDouble.services``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), NomadDouble)
    NomadDouble.seen = []
    NomadDouble.services = {
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
