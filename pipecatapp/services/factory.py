"""Configuration -> pipecat services. The pipeline never knows which engine it got.

Engine adapters live one per file beside this one (stt_whisper, stt_realtimestt, tts_piper,
tts_melotts, llm_openai). Model paths left empty in the configuration resolve to the embedded
defaults from PyPI packages (pipecatapp.embedded.models).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

from pipecatapp.config import AppConfig
from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.llm_openai import LocalOpenAILLMService


def _adapter(module: str) -> Any | None:
    """An engine adapter module of this package, or None while it does not exist."""
    try:
        return importlib.import_module(f"pipecatapp.services.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"pipecatapp.services.{module}":
            return None
        raise


def stt_model(cfg: AppConfig) -> str:
    if cfg.stt.model:
        return cfg.stt.model
    from pipecatapp.embedded import models

    return str(models.whisper_base_dir())


def build_stt(cfg: AppConfig) -> STTService:
    s = cfg.stt
    model = stt_model(cfg)
    if s.engine == "whisper":
        if cfg.profile == "stock":
            # pipecat's own service, untouched: beam 5, library thread default.
            from pipecat.services.whisper.stt import WhisperSTTService

            return WhisperSTTService(
                device="cpu",
                compute_type=s.compute_type,
                settings=WhisperSTTService.Settings(model=model, language=s.language),
            )
        mod = _adapter("stt_whisper")
        if mod is None:
            from pipecat.services.whisper.stt import WhisperSTTService

            logger.warning("stt_whisper adapter missing: pipecat's WhisperSTTService (beam 5)")
            return WhisperSTTService(
                device="cpu",
                compute_type=s.compute_type,
                settings=WhisperSTTService.Settings(model=model, language=s.language),
            )
        return mod.WhisperSTT(
            model=model,
            beam_size=s.beam_size,
            cpu_threads=s.cpu_threads,
            language=s.language,
            compute_type=s.compute_type,
        )
    if s.engine == "realtimestt":
        mod = _adapter("stt_realtimestt")
        if mod is None:
            raise EngineUnavailable("stt.engine=realtimestt: its adapter is not installed yet")
        from pipecatapp.embedded import models

        return mod.RealtimeSTTService(
            model=model,
            beam_size=s.beam_size,
            cpu_threads=s.cpu_threads,
            language=s.language,
            silero_onnx_path=str(models.silero_vad_onnx()),
            compute_type=s.compute_type,
        )
    raise ConfigError("stt.engine", f"unknown engine {s.engine!r}")


def piper_voice_path(cfg: AppConfig) -> Path:
    if cfg.tts.voice:
        path = Path(cfg.tts.voice).expanduser()
        if not path.is_file():
            raise ConfigError("tts.voice", f"{path} is not a Piper .onnx voice file")
        return path
    from pipecatapp.embedded import models

    return models.piper_voice()


def build_tts(cfg: AppConfig) -> TTSService:
    t = cfg.tts
    if t.engine == "piper":
        voice = piper_voice_path(cfg)
        mod = _adapter("tts_piper")
        if mod is None:
            from pipecat.services.piper.tts import PiperTTSService

            name = voice.name.removesuffix(".onnx")
            return PiperTTSService(
                download_dir=voice.parent, settings=PiperTTSService.Settings(voice=name)
            )
        return mod.PiperTTS(
            voice_path=str(voice),
            length_scale=t.length_scale,
            speaker=None if t.speaker < 0 else t.speaker,
        )
    if t.engine == "melotts":
        mod = _adapter("tts_melotts")
        if mod is None:
            raise EngineUnavailable("tts.engine=melotts: its adapter is not installed yet")
        if not t.melo_config or not t.melo_ckpt:
            raise ConfigError(
                "tts.melo_config" if not t.melo_config else "tts.melo_ckpt",
                "MeloTTS needs a local config.json and checkpoint.pth",
            )
        return mod.MeloTTSService(
            config_path=t.melo_config,
            ckpt_path=t.melo_ckpt,
            language=t.melo_language,
            speaker=t.melo_speaker,
            speed=t.melo_speed,
        )
    raise ConfigError("tts.engine", f"unknown engine {t.engine!r}")


def render_apology(cfg: AppConfig, tts: TTSService) -> tuple[bytes, int]:
    """The apology as PCM16 mono and its sample rate, synthesized once before the pipeline runs."""
    common = _adapter("tts_common")
    if common is not None:
        return common.render_speech(tts, cfg.tts.apology)
    if cfg.tts.engine != "piper":
        raise EngineUnavailable("cannot pre-render the apology without tts_common")
    from piper import PiperVoice

    voice = PiperVoice.load(str(piper_voice_path(cfg)))
    chunks = list(voice.synthesize(cfg.tts.apology))
    return b"".join(c.audio_int16_bytes for c in chunks), chunks[0].sample_rate


def build_llm(cfg: AppConfig, base_url: str) -> LocalOpenAILLMService:
    llm = cfg.llm
    return LocalOpenAILLMService(
        base_url=base_url,
        api_key=llm.api_key,
        model=llm.model,
        max_tokens=llm.max_tokens,
        temperature=llm.temperature,
        system_prompt=llm.system_prompt,
        first_token_timeout=llm.first_token_timeout,
    )
