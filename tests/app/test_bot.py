"""The start-up path of the bot: the LLM URL resolved once into the settings, and the warm-up
going through the LLM service itself (one HTTP client per endpoint), against a real
llama-server on the tiny GGUF."""

from __future__ import annotations

import contextlib
import time

from loguru import logger

from pipecatapp.bot import warm_up
from pipecatapp.cli import resolve_llm
from pipecatapp.config import load_config
from pipecatapp.embedded.server import free_port
from pipecatapp.services.llm_openai import LocalOpenAILLMService
from tests.app.counting_proxy import CountingProxy
from tests.app.nomad_double import TOKEN


def test_an_explicit_url_is_kept_in_the_settings_without_its_trailing_slash():
    cfg = load_config(environ={}, overrides={"llm.url": "http://10.0.0.5:8080/v1/"})
    with contextlib.ExitStack() as stack:
        resolve_llm(cfg, stack)
    assert cfg.llm.url == "http://10.0.0.5:8080/v1"


def test_the_url_from_nomad_lands_in_the_settings(fake_nomad):
    cfg = load_config(environ={"NOMAD_ADDR": fake_nomad, "NOMAD_TOKEN": TOKEN})
    assert cfg.llm.url == ""
    with contextlib.ExitStack() as stack:
        resolve_llm(cfg, stack)
    assert cfg.llm.url == "http://10.77.0.2:8080/v1"


async def test_warm_up_asks_through_the_service_with_its_own_settings(tiny_server):
    with CountingProxy(tiny_server.base_url).running() as proxy:
        llm = LocalOpenAILLMService(base_url=proxy.base_url, api_key="", model="m",
                                    system_prompt="Be brief.", temperature=0.3, max_tokens=64)
        warnings: list[str] = []
        sink = logger.add(warnings.append, level="WARNING")
        started = time.monotonic()
        try:
            await warm_up(llm, "")
        finally:
            logger.remove(sink)
        took = time.monotonic() - started
    assert warnings == []  # it worked (a failure would only be logged)
    assert len(proxy.requests) == 1
    body = proxy.requests[0]
    assert body["stream"] is True  # the request a turn makes, closed after its first token
    assert body["temperature"] == 0.3  # the service's own settings, not a second copy
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][-1] == {"role": "user", "content": "Hello."}
    assert took < 10


async def test_warm_up_failure_is_logged_and_the_start_goes_on():
    secret = "sk-warmup-secret-0123456789"
    llm = LocalOpenAILLMService(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=secret)
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING")
    started = time.monotonic()
    try:
        await warm_up(llm, secret)  # no exception
    finally:
        logger.remove(sink)
    assert time.monotonic() - started < 10  # connect refused fails fast (no retries)
    assert len(warnings) == 1 and "LLM warm-up failed (APIConnectionError" in warnings[0]
    assert secret not in warnings[0]


def test_the_bot_is_built_on_one_page() -> None:
    """build_bot stays one readable function: under 120 lines from signature to return."""
    import inspect

    from pipecatapp.bot import build_bot

    lines = inspect.getsource(build_bot).splitlines()
    assert len(lines) < 120, f"build_bot is {len(lines)} lines"
