"""The app's one configuration: defaults < YAML file < environment (PIPECATAPP_*) < CLI flags.

Every setting has a dotted name (``stt.beam_size``); the same name is the YAML key path, the
environment variable (``PIPECATAPP_STT_BEAM_SIZE``) and the ``--set stt.beam_size=1`` flag.
A profile (``tuned``, the default, or ``stock``) picks the defaults of the latency-related
settings before anything else is applied. ``validate()`` checks every value and raises
:class:`~pipecatapp.errors.ConfigError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipecatapp.errors import ConfigError

ENV_PREFIX = "PIPECATAPP_"

# Environment variables outside the PIPECATAPP_ namespace that Nomad tooling already uses.
FOREIGN_ENV = {"NOMAD_ADDR": "llm.nomad_addr", "NOMAD_TOKEN": "llm.nomad_token"}

# Short environment aliases, documented in the README (The voice app).
ENV_ALIASES = {
    "PIPECATAPP_LLM_SERVICE": "llm.service",
    "PIPECATAPP_LLM_URL": "llm.url",
    "PIPECATAPP_LLM_API_KEY": "llm.api_key",
}

SECRET_SETTINGS = frozenset({"llm.api_key", "llm.nomad_token"})

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your answers are spoken aloud, so answer in one or "
    "two short sentences of plain words: no lists, no markdown, no emoji."
)
DEFAULT_APOLOGY = "Sorry, I can't answer right now. Please try again in a moment."
DEFAULT_NOT_UNDERSTOOD = "Sorry, I didn't catch that."

TRANSPORTS = ("webrtc", "local", "file")
PROFILES = ("tuned", "stock")
STT_ENGINES = ("whisper", "realtimestt")
TTS_ENGINES = ("piper", "melotts")
STOP_STRATEGIES = ("sentence_end", "speech_timeout", "smart_turn")


@dataclass
class LLMConfig:
    url: str = ""  # OpenAI-compatible base URL (".../v1"); empty: Nomad lookup or embedded
    api_key: str = field(default="", repr=False)
    model: str = "default"
    max_tokens: int = 150
    temperature: float = 0.2
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    first_token_timeout: float = 4.0  # seconds without a first token -> spoken apology
    max_history: int = 16  # messages of conversation sent to the LLM (bounded context)
    # llama.cpp's repeat penalty: 1.1 stops SmolLM2 from answering every later question with
    # a copy of an earlier answer ("The answer is 4."); 1.0 = off (stock).
    repeat_penalty: float = 1.1
    service: str = "primacpp-api"  # Nomad service name looked up when url is empty
    nomad_addr: str = ""
    nomad_token: str = field(default="", repr=False)
    nomad_namespace: str = "default"
    embedded_threads: int = 1  # llama-server threads in embedded mode
    embedded_model: str = ""  # GGUF for embedded mode; empty: SmolLM2 from its package


@dataclass
class STTConfig:
    engine: str = "whisper"
    model: str = ""  # local CTranslate2 dir or a model name; empty: Whisper base from its package
    beam_size: int = 1
    cpu_threads: int = 2
    language: str = "en"
    compute_type: str = "int8"
    # Shortest Whisper encoder window for an utterance, seconds; 30 = Whisper's full window.
    window_secs: float = 10.0
    # Bound on one utterance's decoding, seconds: Whisper's retries at higher temperatures
    # start only while they fit; what is still unsure then counts as not understood.
    max_secs: float = 0.6
    # Mean token log-probability below which a transcript is unsure (not understood).
    min_avg_logprob: float = -1.0


@dataclass
class TTSConfig:
    engine: str = "piper"
    voice: str = ""  # piper .onnx path; empty: joe-medium from its package
    length_scale: float = 1.0
    speaker: int = -1  # piper speaker id; -1: the voice's default
    melo_config: str = ""
    melo_ckpt: str = ""
    melo_language: str = "EN"
    melo_speaker: str = "EN-US"
    melo_speed: float = 1.0
    apology: str = DEFAULT_APOLOGY
    # Said when the user's speech was not understood (never sent to the LLM); "off": silence.
    not_understood: str = DEFAULT_NOT_UNDERSTOOD
    # A reply's first clause ("..., " of at least this many words) goes to TTS on its own,
    # before its sentence is complete; 0 = whole sentences only (stock).
    first_clause_words: int = 4


@dataclass
class VADConfig:
    # Tuned for fast barge-in: 2 Silero windows (64 ms) of speech start a user turn.
    confidence: float = 0.5
    start_secs: float = 0.064
    stop_secs: float = 0.2
    min_volume: float = 0.2


@dataclass
class TurnConfig:
    # sentence_end: a transcript that is a finished sentence of sentence_min_words or more
    # ends the turn at once, anything else after speech_timeout (see pipecatapp/turnstop.py).
    stop_strategy: str = "sentence_end"
    speech_timeout: float = 0.3  # seconds of silence after VAD stop before the turn ends
    sentence_min_words: int = 3
    interruptions: bool = True
    half_duplex: bool = False  # mute user input while the bot speaks (open speakers, no AEC)
    warmup: bool = True  # run every model once at start so the first turn is not slow


@dataclass
class FileConfig:
    input: str = ""
    output: str = ""
    timeline: str = ""
    tail_secs: float = 20.0  # how long to wait for the bot after the input ends


@dataclass
class WebRTCConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    # Serve the page over TLS (needed for the microphone on any other device than this one).
    https: bool = False
    cert: str = ""  # PEM certificate for https; empty: a self-signed one, made and cached
    key: str = ""  # PEM private key of cert
    # Also serve pipecat's prebuilt "playground" client at /playground/ (needs internet).
    playground: bool = False


@dataclass
class AppConfig:
    transport: str = "webrtc"
    profile: str = "tuned"
    log_level: str = "INFO"
    timeline: str = ""  # JSONL timeline for any transport (file.timeline wins in file mode)
    llm: LLMConfig = field(default_factory=LLMConfig)
    stt: STTConfig = field(default_factory=STTConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    vad: VADConfig = field(default_factory=VADConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    file: FileConfig = field(default_factory=FileConfig)
    webrtc: WebRTCConfig = field(default_factory=WebRTCConfig)

    def redacted(self) -> dict[str, Any]:
        """The configuration as a dict with every secret replaced by ``***`` (for logs)."""
        out = dataclasses.asdict(self)
        for name in SECRET_SETTINGS:
            section, key = name.split(".")
            if out[section][key]:
                out[section][key] = "***"
        return out

    @property
    def timeline_path(self) -> str:
        return self.file.timeline or self.timeline


# Profile defaults: `stock` reproduces pipecat 1.14's own defaults (for benchmark comparison),
# `tuned` is the project's low-latency set (the dataclass defaults above).
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tuned": {},
    "stock": {
        "stt.beam_size": 5,
        "stt.window_secs": 30.0,
        "turn.stop_strategy": "smart_turn",
        "turn.warmup": False,
        "vad.start_secs": 0.2,
        "vad.stop_secs": 0.2,
        "vad.confidence": 0.7,
        "vad.min_volume": 0.6,
        "llm.max_tokens": 150,
        "llm.repeat_penalty": 1.0,
        "tts.first_clause_words": 0,
    },
}


def setting_names() -> list[str]:
    """Every dotted setting name, in declaration order."""
    names: list[str] = []
    for f in dataclasses.fields(AppConfig):
        if dataclasses.is_dataclass(f.type) or f.name in _SECTIONS:
            names.extend(f"{f.name}.{sub.name}" for sub in dataclasses.fields(_SECTIONS[f.name]))
        else:
            names.append(f.name)
    return names


_SECTIONS: dict[str, type] = {
    "llm": LLMConfig,
    "stt": STTConfig,
    "tts": TTSConfig,
    "vad": VADConfig,
    "turn": TurnConfig,
    "file": FileConfig,
    "webrtc": WebRTCConfig,
}


def _field_type(name: str) -> type:
    hints: dict[str, Any]
    if "." in name:
        section, key = name.split(".", 1)
        hints = typing.get_type_hints(_SECTIONS[section])
        return hints[key]
    return typing.get_type_hints(AppConfig)[name]


def _coerce(name: str, value: Any) -> Any:
    """Turn a YAML/env/CLI value into the setting's type, or raise ConfigError naming it."""
    typ = _field_type(name)
    if isinstance(typ, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if value is None:
        raise ConfigError(name, "must not be empty")
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(name, f"must be an integer, got {value!r}")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(name, f"must be a number, got {value!r}")
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(name, f"must be a number, got {value!r}") from None
    if isinstance(value, (dict, list)):
        raise ConfigError(name, f"must be a single value, got {type(value).__name__}")
    return str(value)


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """YAML mapping -> {dotted name: value}; unknown keys are errors naming the key."""
    flat: dict[str, Any] = {}
    known = set(setting_names())
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(key, f"must be a mapping in {source}")
            for sub, subval in value.items():
                name = f"{key}.{sub}"
                if name not in known:
                    raise ConfigError(name, f"unknown setting in {source}")
                flat[name] = subval
        elif key in known:
            flat[key] = value
        else:
            raise ConfigError(str(key), f"unknown setting in {source}")
    return flat


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into {dotted name: value}."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("--config", f"cannot read {p}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError("--config", f"{p} is not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError("--config", f"{p} must hold a mapping of settings")
    return _flatten(data, str(p))


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.replace(".", "_").upper()


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given in the environment, as {dotted name: raw string}."""
    flat: dict[str, Any] = {}
    for env, name in FOREIGN_ENV.items():
        if environ.get(env):
            flat[name] = environ[env]
    for name in setting_names():
        var = env_name(name)
        if var in environ:
            flat[name] = environ[var]
    for var, name in ENV_ALIASES.items():
        if var in environ:
            flat[name] = environ[var]
    return flat


def _apply(cfg: AppConfig, flat: Mapping[str, Any]) -> None:
    for name, raw in flat.items():
        value = _coerce(name, raw)
        if "." in name:
            section, key = name.split(".", 1)
            setattr(getattr(cfg, section), key, value)
        else:
            setattr(cfg, name, value)


def load_config(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """Build and validate the configuration from its layers (later layers win)."""
    environ = os.environ if environ is None else environ
    file_layer = read_yaml(config_file) if config_file else {}
    env_layer = read_env(environ)
    cli_layer = dict(overrides or {})
    unknown = set(cli_layer) - set(setting_names())
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(name, "unknown setting")

    profile_raw = cli_layer.get("profile", env_layer.get("profile", file_layer.get("profile")))
    profile = str(profile_raw) if profile_raw is not None else "tuned"
    if profile not in PROFILES:
        raise ConfigError("profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")

    cfg = AppConfig()
    _apply(cfg, PROFILE_DEFAULTS[profile])
    for layer in (file_layer, env_layer, cli_layer):
        _apply(cfg, layer)
    cfg.profile = profile
    validate(cfg)
    return cfg


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")


def _between(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo:g} and {hi:g}, got {value:g}")


def validate(cfg: AppConfig) -> None:
    """Check every setting; raise ConfigError naming the first bad one."""
    _choice("transport", cfg.transport, TRANSPORTS)
    _choice("profile", cfg.profile, PROFILES)
    _choice("log_level", cfg.log_level.upper(), ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"))
    if cfg.llm.url and not cfg.llm.url.startswith(("http://", "https://")):
        raise ConfigError("llm.url", f"must start with http:// or https://, got {cfg.llm.url!r}")
    if cfg.llm.nomad_addr and not cfg.llm.nomad_addr.startswith(("http://", "https://")):
        raise ConfigError("llm.nomad_addr", "must start with http:// or https:// (NOMAD_ADDR)")
    _between("llm.max_tokens", cfg.llm.max_tokens, 1, 4096)
    _between("llm.temperature", cfg.llm.temperature, 0.0, 2.0)
    _between("llm.first_token_timeout", cfg.llm.first_token_timeout, 0.1, 120.0)
    _between("llm.max_history", cfg.llm.max_history, 1, 1000)
    _between("llm.repeat_penalty", cfg.llm.repeat_penalty, 1.0, 2.0)
    _between("llm.embedded_threads", cfg.llm.embedded_threads, 1, 256)
    if not cfg.llm.service:
        raise ConfigError("llm.service", "must name the Nomad service of the LLM")
    _choice("stt.engine", cfg.stt.engine, STT_ENGINES)
    _between("stt.beam_size", cfg.stt.beam_size, 1, 10)
    _between("stt.cpu_threads", cfg.stt.cpu_threads, 1, 64)
    _between("stt.window_secs", cfg.stt.window_secs, 10.0, 30.0)
    _between("stt.max_secs", cfg.stt.max_secs, 0.1, 60.0)
    _between("stt.min_avg_logprob", cfg.stt.min_avg_logprob, -10.0, 0.0)
    _choice("stt.compute_type", cfg.stt.compute_type, ("int8", "int8_float32", "float32"))
    if not cfg.stt.language:
        raise ConfigError("stt.language", "must be a language code such as en")
    _choice("tts.engine", cfg.tts.engine, TTS_ENGINES)
    if cfg.tts.engine == "melotts":
        for name in ("melo_config", "melo_ckpt"):
            if not getattr(cfg.tts, name):
                raise ConfigError(
                    f"tts.{name}", "MeloTTS needs its local config.json and checkpoint.pth"
                )
    _between("tts.length_scale", cfg.tts.length_scale, 0.25, 4.0)
    _between("tts.first_clause_words", cfg.tts.first_clause_words, 0, 50)
    _between("tts.melo_speed", cfg.tts.melo_speed, 0.25, 4.0)
    if not cfg.tts.apology.strip():
        raise ConfigError("tts.apology", "must be a sentence to speak when the LLM fails")
    if not cfg.tts.not_understood.strip():
        raise ConfigError("tts.not_understood", "must be a sentence to speak, or off")
    _between("vad.confidence", cfg.vad.confidence, 0.0, 1.0)
    _between("vad.start_secs", cfg.vad.start_secs, 0.0, 2.0)
    _between("vad.stop_secs", cfg.vad.stop_secs, 0.0, 5.0)
    _between("vad.min_volume", cfg.vad.min_volume, 0.0, 1.0)
    _choice("turn.stop_strategy", cfg.turn.stop_strategy, STOP_STRATEGIES)
    _between("turn.speech_timeout", cfg.turn.speech_timeout, 0.0, 10.0)
    _between("turn.sentence_min_words", cfg.turn.sentence_min_words, 1, 50)
    _between("file.tail_secs", cfg.file.tail_secs, 0.0, 600.0)
    _between("webrtc.port", cfg.webrtc.port, 0, 65535)
    if bool(cfg.webrtc.cert) != bool(cfg.webrtc.key):
        missing = "webrtc.key" if cfg.webrtc.cert else "webrtc.cert"
        raise ConfigError(missing, "give both webrtc.cert and webrtc.key (PEM files), or neither")
    _between("webrtc.port", cfg.webrtc.port, 1, 65535)
    if cfg.transport == "file":
        if not cfg.file.input:
            raise ConfigError("file.input", "the file transport needs --input WAV")
        if not cfg.file.output:
            raise ConfigError("file.output", "the file transport needs --output WAV")
