"""LLM discovery through Nomad's service registry (python-nomad).

The Nomad agent cannot run here (no binary reachable), so these tests use ``fake_nomad``: a
test double, a loopback HTTP server answering ``GET /v1/service/<name>`` the way Nomad's
documented API does (a JSON list of registrations with Address and Port).
"""

from __future__ import annotations

import pytest

from pipecatapp.config import LLMConfig
from pipecatapp.discovery import nomad_llm_url
from pipecatapp.errors import EngineUnavailable
from tests.app.nomad_double import TOKEN, NomadDouble


def test_finds_the_llm_service(fake_nomad):
    cfg = LLMConfig(nomad_addr=fake_nomad, nomad_token=TOKEN)
    assert nomad_llm_url(cfg) == "http://10.77.0.2:8080/v1"
    assert NomadDouble.seen[-1]["path"].startswith("/v1/service/primacpp-api")
    assert NomadDouble.seen[-1]["token"] == TOKEN


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
