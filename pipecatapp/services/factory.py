"""Configuration -> the speech services (STT, TTS, the canned phrases). The pipeline never
knows which engine it got.

Engine adapters live one per file beside this one (stt_whisper, stt_realtimestt, tts_piper,
tts_melotts); the LLM service is built in pipecatapp/bot.py, from ``cfg.llm``. Model paths
left empty in the configuration resolve to the embedded defaults from PyPI packages
(pipecatapp.embedded.models). Heavy engines are imported only when chosen.
"""

from __future__ import annotations

from pathlib import Path

from pipecat.processors.aggregators.llm_text_processor import LLMTextProcessor
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

from pipecatapp.config import AppConfig
from pipecatapp.errors import ConfigError
from pipecatapp.services.first_clause import first_clause_processor


def stt_model(cfg: AppConfig) -> str:
    if cfg.stt.model:
        return cfg.stt.model
    from pipecatapp.embedded import models

    return str(models.whisper_base_dir())


def build_stt(cfg: AppConfig) -> STTService:
    s = cfg.stt
    model = stt_model(cfg)
    if s.engine == "whisper" and cfg.profile == "stock":
        # pipecat's own service, untouched: beam 5, library thread default, no warm-up.
        from pipecat.services.whisper.stt import WhisperSTTService

        return WhisperSTTService(
            device="cpu",
            compute_type=s.compute_type,
            settings=WhisperSTTService.Settings(model=model, language=s.language),
        )
    if s.engine == "whisper":
        from pipecatapp.services.stt_whisper import WhisperSTT

        return WhisperSTT(
            model=model,
            beam_size=s.beam_size,
            cpu_threads=s.cpu_threads,
            language=s.language,
            compute_type=s.compute_type,
            window_secs=s.window_secs,
            max_secs=s.max_secs,
            min_avg_logprob=s.min_avg_logprob,
            early=s.early_secs > 0,
            eager=cfg.turn.speculate,
        )
    if s.engine == "realtimestt":
        from pipecatapp.embedded import models
        from pipecatapp.services.stt_realtimestt import RealtimeSTTService

        return RealtimeSTTService(
            model=model,
            beam_size=s.beam_size,
            cpu_threads=s.cpu_threads,
            language=s.language,
            silero_onnx_path=str(models.silero_vad_onnx()),
            compute_type=s.compute_type,
            window_secs=s.window_secs,
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
        from pipecatapp.services.tts_piper import PiperTTS

        return PiperTTS(
            voice_path=str(piper_voice_path(cfg)),
            length_scale=t.length_scale,
            speaker=None if t.speaker < 0 else t.speaker,
            spin_wait=t.spin_wait,
        )
    if t.engine == "melotts":
        from pipecatapp.services.tts_melotts import MeloTTSService

        return MeloTTSService(
            config_path=t.melo_config,
            ckpt_path=t.melo_ckpt,
            language=t.melo_language,
            speaker=t.melo_speaker,
            speed=t.melo_speed,
        )
    raise ConfigError("tts.engine", f"unknown engine {t.engine!r}")


def build_first_clause(cfg: AppConfig, tts: TTSService) -> LLMTextProcessor | None:
    """The processor that speaks each reply's first piece on its own (None: whole sentences,
    ``tts.first_clause_words`` 0)."""
    t = cfg.tts
    return first_clause_processor(tts, t.first_clause_words, t.first_piece_max_words,
                                  t.first_piece_secs)


def render_apology(cfg: AppConfig, tts: TTSService) -> tuple[bytes, int]:
    """The apology as PCM16 mono and its sample rate, synthesized once before the pipeline
    runs (so it plays even when everything else is failing)."""
    from pipecatapp.services.tts_common import render_speech

    return render_speech(tts, cfg.tts.apology)


def not_understood_text(cfg: AppConfig) -> str:
    """The sentence said for speech not understood; empty when ``tts.not_understood`` is off."""
    text = cfg.tts.not_understood.strip()
    return "" if text.lower() == "off" else text


def render_not_understood(cfg: AppConfig, tts: TTSService) -> tuple[bytes, int]:
    """"Sorry, I didn't catch that." as PCM16 mono and its rate, synthesized at start-up
    (no audio when the setting is off)."""
    from pipecatapp.services.tts_common import render_speech, trim_lead_in

    text = not_understood_text(cfg)
    if not text:
        return b"", 24000
    pcm, rate = render_speech(tts, text)
    return trim_lead_in(pcm, rate)[0], rate
