"""Finding the LLM: an explicit URL, else Nomad's service registry, else nothing (embedded).

Nomad's native service discovery (``service { provider = "nomad" }``) answers
``GET /v1/service/<name>`` with the registrations of that service; python-nomad 2.1 has no
wrapper for that endpoint, so a small Requester subclass adds it, reusing python-nomad's
address, token, namespace, TLS and timeout handling.
"""

from __future__ import annotations

from typing import Any

import nomad
import requests
from loguru import logger
from nomad.api.base import Requester
from nomad.api.exceptions import BaseNomadException

from pipecatapp.config import LLMConfig
from pipecatapp.errors import EngineUnavailable, redact


class ServiceRegistry(Requester):
    """Nomad's service registry endpoint (``/v1/service/<name>``)."""

    ENDPOINT = "service"

    def registrations(self, name: str) -> list[dict[str, Any]]:
        return self.request(name, method="get").json()


def _client(llm: LLMConfig) -> nomad.Nomad:
    return nomad.Nomad(
        address=llm.nomad_addr,
        token=llm.nomad_token.get_secret_value() or None,
        namespace=llm.nomad_namespace or None,
        timeout=5,
    )


def nomad_llm_url(llm: LLMConfig) -> str:
    """The base URL (``http://host:port/v1``) of the first healthy registration of the
    ``llm.service`` service, or EngineUnavailable naming what to fix."""
    client = _client(llm)
    registry = ServiceRegistry(**client.requester_settings)
    where = f"Nomad at {llm.nomad_addr} (NOMAD_ADDR)"
    token = llm.nomad_token.get_secret_value()
    try:
        regs = registry.registrations(llm.service)
    except BaseNomadException as e:
        resp = getattr(e, "nomad_resp", None)
        if isinstance(resp, requests.RequestException) or resp is None:
            raise EngineUnavailable(
                redact(f"{where} is unreachable: {type(resp).__name__}", token)
            ) from None
        status = getattr(resp, "status_code", "?")
        raise EngineUnavailable(
            redact(f"{where} refused the lookup of service {llm.service!r} (HTTP {status}); "
                   "check NOMAD_TOKEN", token)
        ) from None
    except requests.RequestException as e:
        raise EngineUnavailable(
            redact(f"{where} is unreachable: {type(e).__name__}", token)
        ) from None
    except ValueError:
        raise EngineUnavailable(f"{where} answered with something that is not JSON") from None
    if not isinstance(regs, list) or not regs:
        raise EngineUnavailable(
            f"service {llm.service!r} (llm.service / PIPECATAPP_LLM_SERVICE) has no "
            f"registration in {where}: is the primacpp job running?"
        )
    reg = regs[0]
    address, port = reg.get("Address"), reg.get("Port")
    if not address or not port:
        raise EngineUnavailable(f"service {llm.service!r} in {where} has no address and port")
    host = f"[{address}]" if ":" in str(address) else address
    url = f"http://{host}:{port}/v1"
    logger.info(f"LLM from Nomad service {llm.service!r}: {url}")
    return url
