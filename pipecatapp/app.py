"""Start-up and one session: find the LLM, build the services, run the pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx
from loguru import logger
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

from pipecatapp.config import AppConfig
from pipecatapp.discovery import nomad_llm_url
from pipecatapp.errors import EngineUnavailable, redact
from pipecatapp.not_understood import SayNotUnderstoodFrame
from pipecatapp.pipeline import build_worker
from pipecatapp.resilience import ApologyPlayer, CannedSpeechPlayer, TurnFailedFrame
from pipecatapp.services import factory
from pipecatapp.timeline import AppClock, Timeline


def resolve_llm(cfg: AppConfig, stack: contextlib.ExitStack) -> str:
    """The LLM's base URL: llm.url, else Nomad's registry (NOMAD_ADDR), else an embedded
    llama-server on SmolLM2 that lives as long as ``stack``."""
    if cfg.llm.url:
        logger.info(f"LLM at {cfg.llm.url}")
        return cfg.llm.url.rstrip("/")
    if cfg.llm.nomad_addr:
        return nomad_llm_url(cfg.llm)
    from pathlib import Path

    from pipecatapp.embedded import models, server

    model = Path(cfg.llm.embedded_model) if cfg.llm.embedded_model else models.smollm2_gguf()
    if not model.is_file():
        raise EngineUnavailable(f"llm.embedded_model: {model} is not a GGUF file")
    logger.info(f"embedded mode: starting llama-server on {model.name}")
    srv = server.LlamaServer(model, threads=cfg.llm.embedded_threads, ctx=4096)
    stack.callback(srv.stop)
    srv.start()
    srv.wait_ready(120)
    logger.info(f"embedded llama-server ready at {srv.base_url}")
    return srv.base_url


def warm_llm(cfg: AppConfig, base_url: str) -> None:
    """One tiny completion with the system prompt, so the first turn finds the model loaded
    and the prompt cached. A failure is only logged: the app starts and apologizes."""
    key = cfg.llm.api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {
        "model": cfg.llm.model,
        "max_tokens": 1,
        "messages": [
            {"role": "system", "content": cfg.llm.system_prompt},
            {"role": "user", "content": "Hello."},
        ],
    }
    try:
        r = httpx.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=30)
        r.raise_for_status()
    except httpx.HTTPError as e:
        logger.warning(redact(f"LLM warm-up failed ({e}); continuing", key))


class Engines:
    """The services of one session (speech models load here, once per session)."""

    def __init__(self, cfg: AppConfig, base_url: str, timeline: Timeline) -> None:
        self.stt = factory.build_stt(cfg)
        self.tts = factory.build_tts(cfg)
        audio, rate = factory.render_apology(cfg, self.tts)
        self.llm = factory.build_llm(cfg, base_url)

        def on_failure(frame: TurnFailedFrame) -> None:
            timeline.turn_failed(frame.stage, frame.reason)
            timeline.apology()

        self.apology = ApologyPlayer(audio, rate, text=cfg.tts.apology, on_failure=on_failure)
        sorry, sorry_rate = factory.render_not_understood(cfg, self.tts)
        self.not_understood = CannedSpeechPlayer(
            SayNotUnderstoodFrame, sorry, sorry_rate, text=factory.not_understood_text(cfg),
            on_play=lambda f: timeline.not_understood_reply(f.reason, bool(sorry)),
        )


def _messages(context: LLMContext) -> list[dict[str, str]]:
    out = []
    for m in context.get_messages():
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            out.append({"role": str(m.get("role")), "content": m["content"]})
    return out


async def run_session(
    cfg: AppConfig,
    *,
    base_url: str,
    make_transport: Callable[[AppClock, Timeline], BaseTransport],
    rtvi: bool = False,
    handle_sigint: bool = True,
) -> Timeline:
    """Run one conversation until the transport ends it; returns its timeline."""
    clock = AppClock()
    timeline = Timeline(clock, cfg.timeline_path or None)
    context = LLMContext()
    try:
        engines = Engines(cfg, base_url, timeline)
        transport = make_transport(clock, timeline)
        worker = build_worker(
            cfg,
            transport=transport,
            stt=engines.stt,
            llm=engines.llm,
            tts=engines.tts,
            apology=engines.apology,
            not_understood=engines.not_understood,
            clock=clock,
            timeline=timeline,
            context=context,
            rtvi=rtvi,
        )
        runner = WorkerRunner(handle_sigint=handle_sigint)
        await runner.add_workers(worker)
        timeline.write("ready")
        await runner.run()
    finally:
        # What the conversation holds at the end: after a barge-in, only what was spoken.
        timeline.write("context", messages=_messages(context))
        timeline.close()
    return timeline
