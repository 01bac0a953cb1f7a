"""``python -m pipecatapp``: parse flags, load the configuration, run the chosen transport.

Errors the user can fix (bad setting, missing engine, unusable input audio) print one line and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from pipecatapp.config import AppConfig, LLMConfig, load_config
from pipecatapp.errors import ConfigError, EngineUnavailable, redact
from pipecatapp.transports.wavio import AudioFileError

EXIT_USAGE = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipecatapp",
        description="A private voice assistant: microphone -> STT -> LLM -> TTS -> speaker.",
    )
    p.add_argument("--config", help="YAML file of settings (see the README (The voice app))")
    p.add_argument("-t", "--transport", choices=["webrtc", "local", "file"])
    p.add_argument("--profile", choices=["tuned", "stock"], help="latency defaults")
    p.add_argument("--input", help="file transport: user speech (WAV, FLAC or OGG, any rate)")
    p.add_argument("--output", help="file transport: WAV of the bot's speech")
    p.add_argument("--timeline", help="JSONL timeline of the session")
    p.add_argument("--llm-url", help="OpenAI-compatible base URL, e.g. http://host:8080/v1")
    p.add_argument("--llm-service", help="Nomad service name of the LLM (default primacpp-api)")
    p.add_argument("--max-tokens", type=str, help="reply length bound (default 150)")
    p.add_argument("--stt", choices=["whisper", "realtimestt"], help="speech-to-text engine")
    p.add_argument("--tts", choices=["piper", "melotts"], help="text-to-speech engine")
    p.add_argument("--half-duplex", action="store_true", default=None,
                   help="mute the microphone while the bot speaks (open speakers, no AEC)")
    p.add_argument("--no-interruptions", action="store_true", default=None,
                   help="do not let user speech interrupt the bot")
    p.add_argument("--host", help="webrtc: address to listen on (default 127.0.0.1)")
    p.add_argument("--port", help="webrtc: port (default 7860)")
    p.add_argument("--https", action="store_true", default=None,
                   help="webrtc: serve the page over HTTPS (self-signed unless --cert/--key)")
    p.add_argument("--cert", help="webrtc: PEM certificate for --https")
    p.add_argument("--key", help="webrtc: PEM private key for --https")
    p.add_argument("--playground", action="store_true", default=None,
                   help="webrtc: also serve pipecat's prebuilt client at /playground/ "
                        "(it loads code from the internet)")
    p.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any setting by its dotted name, e.g. --set stt.beam_size=1")
    return p


FLAG_SETTINGS = {
    "transport": "transport",
    "profile": "profile",
    "input": "file.input",
    "output": "file.output",
    "timeline": "timeline",
    "llm_url": "llm.url",
    "llm_service": "llm.service",
    "max_tokens": "llm.max_tokens",
    "stt": "stt.engine",
    "tts": "tts.engine",
    "host": "webrtc.host",
    "port": "webrtc.port",
    "cert": "webrtc.cert",
    "key": "webrtc.key",
    "log_level": "log_level",
}


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--set", f"expected NAME=VALUE, got {item!r}")
        out[name.strip()] = value
    for flag, name in FLAG_SETTINGS.items():
        value = getattr(args, flag)
        if value is not None:
            out[name] = value
    if args.half_duplex:
        out["turn.half_duplex"] = True
    if args.no_interruptions:
        out["turn.interruptions"] = False
    if args.https:
        out["webrtc.https"] = True
    if args.playground:
        out["webrtc.playground"] = True
    if (out.get("transport") == "file" or args.input) and args.timeline:
        out["file.timeline"] = args.timeline
    return out


def setup_logging(cfg: AppConfig) -> None:
    secrets = [s.get_secret_value() for s in (cfg.llm.api_key, cfg.llm.nomad_token)]

    def scrub(record: Any) -> None:
        record["message"] = redact(record["message"], *secrets)

    logger.remove()
    logger.configure(patcher=scrub)
    logger.add(sys.stderr, level=cfg.log_level.upper())


def resolve_llm(cfg: AppConfig, stack: contextlib.ExitStack) -> None:
    """Fill ``cfg.llm.url``, once, before the bot is built; everything downstream reads it:
    ``--llm-url``/``llm.url`` as given, else Nomad's service registry (``llm.nomad_addr``),
    else an embedded llama-server on SmolLM2 that lives as long as ``stack``."""
    llm = cfg.llm
    if llm.url:
        llm.url = llm.url.rstrip("/")
    elif llm.nomad_addr:
        from pipecatapp.discovery import nomad_llm_url

        llm.url = nomad_llm_url(llm)
    else:
        llm.url = embedded_llm(llm, stack)
    logger.info(f"LLM at {llm.url}")


def embedded_llm(llm: LLMConfig, stack: contextlib.ExitStack) -> str:
    """Start llama-server on ``llm.embedded_model`` (default SmolLM2); its base URL."""
    from pipecatapp.embedded import models, server

    model = Path(llm.embedded_model) if llm.embedded_model else models.smollm2_gguf()
    if not model.is_file():
        raise EngineUnavailable(f"llm.embedded_model: {model} is not a GGUF file")
    logger.info(f"embedded mode: starting llama-server on {model.name}")
    srv = server.LlamaServer(model, threads=llm.embedded_threads, ctx=4096,
                             batch_threads=server.batch_threads(llm.embedded_batch_threads))
    stack.callback(srv.stop)
    srv.start()
    srv.wait_ready(120)
    return srv.base_url


def run(cfg: AppConfig) -> int:
    """One path for every transport: its own checks first (input file, sound card), then the
    LLM's URL, then sessions of the bot (pipecatapp/bot.py) on it."""
    from pipecatapp.bot import run_session
    from pipecatapp.transports import runner_for

    logger.info(f"configuration: {cfg.redacted()}")
    transport = runner_for(cfg)
    with contextlib.ExitStack() as stack:
        resolve_llm(cfg, stack)
        asyncio.run(transport.serve(functools.partial(run_session, cfg)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load_config(config_file=args.config, overrides=overrides_from(args))
        setup_logging(cfg)
        return run(cfg)
    except (ConfigError, EngineUnavailable, AudioFileError) as e:
        print(f"pipecatapp: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
