"""The app's one configuration, typed with pydantic-settings.

Layers, later wins: defaults < profile < YAML file (``--config``) < environment
(``PIPECATAPP_*``; ``NOMAD_ADDR``/``NOMAD_TOKEN``) < command-line flags (``--set``).
Every setting has a dotted name (``stt.beam_size``); the same name is the YAML key path, the
environment variable (``PIPECATAPP_STT_BEAM_SIZE``) and ``--set stt.beam_size=1``. The profile
(``tuned``, the default, or ``stock``) picks the defaults of the latency settings.
:func:`load_config` raises :class:`~pipecatapp.errors.ConfigError` naming a bad setting.
The settings table of docs/configuration.md is generated from these models
(``python -m devtools.settingsdoc``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from pipecatapp.errors import ConfigError

ENV_PREFIX = "PIPECATAPP_"
# Nomad's own variables, read too; the PIPECATAPP_LLM_NOMAD_* names win over them.
FOREIGN_ENV = {"NOMAD_ADDR": "llm.nomad_addr", "NOMAD_TOKEN": "llm.nomad_token"}

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your answers are spoken aloud, so answer in one or "
    "two short sentences of plain words: no lists, no markdown, no emoji."
)
DEFAULT_APOLOGY = "Sorry, I can't answer right now. Please try again in a moment."
DEFAULT_NOT_UNDERSTOOD = "Sorry, I didn't catch that."

# `stock` reproduces pipecat 1.14's own defaults (for benchmark comparison); `tuned` is the
# project's low-latency set (the field defaults below).
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tuned": {},
    "stock": {
        "stt.beam_size": 5,
        "stt.window_secs": 30.0,
        "stt.early_secs": 0.0,
        "turn.stop_strategy": "smart_turn",
        "turn.speculate": False,
        "turn.warmup": False,
        "vad.start_secs": 0.2,
        "vad.stop_secs": 0.2,
        "vad.confidence": 0.7,
        "vad.min_volume": 0.6,
        "vad.hold_output": False,
        "llm.max_tokens": 150,
        "llm.repeat_penalty": 1.0,
        "llm.embedded_batch_threads": 1,
        "tts.first_clause_words": 0,
        "tts.first_piece_max_words": 0,
        "tts.first_piece_secs": 0.0,
        "tts.spin_wait": True,
    },
}


def _http(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    return value


HttpURL = Annotated[str, AfterValidator(_http)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Section(BaseModel):
    """A group of settings (``llm``, ``stt``, ...): unknown keys are errors, and so are bad
    values assigned in code."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              coerce_numbers_to_str=True)


class LLMConfig(Section):
    url: HttpURL = Field("", description=(
        "OpenAI-compatible base URL (`http://` or `https://`, ending in `/v1`); empty: the "
        "Nomad service `llm.service` when `NOMAD_ADDR` is set, else the embedded "
        "llama-server ([Finding the LLM](#finding-the-llm))."))
    api_key: SecretStr = Field(SecretStr(""), description=(
        "Bearer token for the LLM server; set it in the environment, not in a file or flag."))
    model: str = Field("default", description="Model name sent with each request.")
    max_tokens: int = Field(150, ge=1, le=4096, description="Bound on a reply's length.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature.")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description=(
        "Asks for short spoken answers (SmolLM2 answers in French without one)."))
    first_token_timeout: float = Field(4.0, ge=0.1, le=120, description=(
        "Seconds without a first token before the bot says `tts.apology` and listens again."))
    max_history: int = Field(16, ge=1, le=1000, description=(
        "Messages of conversation sent to the LLM; when exceeded, cut back to the last 8 so "
        "the prompt's start, and llama-server's prompt cache, stay valid for the next turns."))
    repeat_penalty: float = Field(1.1, ge=1, le=2, description=(
        "llama.cpp's repeat penalty, sent in `extra_body`; 1.0 = off. Without it SmolLM2 "
        "answers every question after \"what is 2 plus 2?\" with \"The answer is 4.\""))
    service: NonEmpty = Field("primacpp-api", description=(
        "Nomad service of the LLM, looked up when `llm.url` is empty."))
    nomad_addr: HttpURL = Field("", description=(
        "Nomad's HTTP API (`http://` or `https://`), for the service lookup."))
    nomad_token: SecretStr = Field(SecretStr(""), description="Nomad ACL token of the lookup.")
    nomad_namespace: str = Field("default", description="Nomad namespace of the service.")
    embedded_threads: int = Field(1, ge=1, le=256, description=(
        "llama-server threads in embedded mode (Whisper and Piper share the cores)."))
    embedded_batch_threads: int = Field(0, ge=0, le=256, description=(
        "llama-server threads for prompt evaluation (`-tb`) in embedded mode; 0: every core "
        "this process may use, at most 8. A turn's prompt is evaluated after Whisper has "
        "finished and before Piper starts."))
    embedded_model: str = Field("", description=(
        "GGUF file for embedded mode; empty: SmolLM2-135M from its package."))


class STTConfig(Section):
    engine: Literal["whisper", "realtimestt"] = Field("whisper", description=(
        "Speech-to-text engine ([engines.md](engines.md))."))
    model: str = Field("", description=(
        "A local CTranslate2 Whisper directory or a model name; empty: Whisper base from "
        "its packages."))
    beam_size: int = Field(1, ge=1, le=10, description="Whisper beam size; 1 = greedy.")
    cpu_threads: int = Field(2, ge=1, le=64, description="CTranslate2 threads.")
    language: NonEmpty = Field("en", description="Spoken language (skips language detection).")
    compute_type: Literal["int8", "int8_float32", "float32"] = Field(
        "int8", description="CTranslate2 compute type.")
    window_secs: float = Field(8.0, ge=8, le=30, description=(
        "Shortest Whisper encoder window of an utterance, seconds (at least twice the "
        "utterance, after its quiet lead is trimmed); 30 = Whisper's full window."))
    max_secs: float = Field(0.6, ge=0.1, le=60, description=(
        "Bound on one utterance's decoding, seconds: Whisper's retries at higher "
        "temperatures start only while they fit; what is still unsure then is not "
        "understood ([speech.md](speech.md))."))
    min_avg_logprob: float = Field(-1.0, ge=-10, le=0, description=(
        "Mean token log-probability below which a transcript is unsure (not understood)."))
    early_secs: float = Field(0.02, ge=0, le=5, description=(
        "Whisper: start transcribing after this much of a pause, before `vad.stop_secs` "
        "confirms the end of speech; the result is used only if the user did not go on. "
        "0: off."))


class TTSConfig(Section):
    engine: Literal["piper", "melotts"] = Field("piper", description=(
        "Text-to-speech engine ([engines.md](engines.md))."))
    voice: str = Field("", description=(
        "Piper voice `.onnx` (its `.onnx.json` beside it); empty: en_US-joe-medium from its "
        "package."))
    length_scale: float = Field(1.0, ge=0.25, le=4, description=(
        "Piper speaking time factor; below 1 is faster."))
    speaker: int = Field(-1, description="Piper speaker id; -1: the voice's default.")
    spin_wait: bool = Field(False, description=(
        "Piper: onnxruntime's threads spin while they wait for work (its default). Off, they "
        "sleep and leave the other core to the LLM, which decodes while Piper speaks "
        "([benchmarks.md](benchmarks.md#tuning-each-setting-and-its-measured-effect))."))
    melo_config: str = Field("", description="MeloTTS voice `config.json` (needed for melotts).")
    melo_ckpt: str = Field("", description="MeloTTS `checkpoint.pth` (needed for melotts).")
    melo_language: str = Field("EN", description="MeloTTS language.")
    melo_speaker: str = Field("EN-US", description="MeloTTS speaker of the voice.")
    melo_speed: float = Field(1.0, ge=0.25, le=4, description="MeloTTS speaking rate.")
    apology: NonEmpty = Field(DEFAULT_APOLOGY, description=(
        "Said when the LLM fails or is too slow; synthesized at start-up."))
    not_understood: NonEmpty = Field(DEFAULT_NOT_UNDERSTOOD, description=(
        "Said when the user's speech was not understood (never sent to the LLM); `off`: "
        "stay silent."))
    first_clause_words: int = Field(4, ge=0, le=50, description=(
        "A reply's first clause of this many words or more, ending in `,` `;` `:`, is "
        "spoken before its sentence is complete; 0 = whole sentences only."))
    first_piece_max_words: int = Field(4, ge=0, le=50, description=(
        "With `first_clause_words` set, a reply's first piece also ends before a joining word "
        "(`and`, `which`, `in`, ...) that follows at least `first_clause_words` words, or "
        "after this many words at a word that does not lean on the next (`the`, `is`, ...); "
        "0 = only at `,` `;` `:`."))
    first_piece_secs: float = Field(0.1, ge=0, le=5, description=(
        "Once a reply has been measured, `first_piece_max_words` becomes the words the LLM "
        "writes in this many seconds (median of its last replies); 0 = keep it fixed."))

    @model_validator(mode="after")
    def _melo_files(self) -> TTSConfig:
        for name in ("melo_config", "melo_ckpt"):
            if self.engine == "melotts" and not getattr(self, name):
                raise ConfigError(f"tts.{name}",
                                  "MeloTTS needs its local config.json and checkpoint.pth")
        return self


class VADConfig(Section):
    confidence: float = Field(0.5, ge=0, le=1, description="Silero VAD speech confidence.")
    start_secs: float = Field(0.064, ge=0, le=2, description=(
        "Speech that starts a user turn, seconds (0.064 = two Silero windows: fast barge-in)."))
    stop_secs: float = Field(0.2, ge=0, le=5, description="Silence that ends speech, seconds.")
    min_volume: float = Field(0.2, ge=0, le=1, description="Quietest audio counted as speech.")
    hold_output: bool = Field(True, description=(
        "Stop writing the bot's voice on the first window of user speech, before the start is "
        "confirmed; resume if it is not (barge-in one Silero window sooner, no false "
        "interruption)."))


class TurnConfig(Section):
    stop_strategy: Literal["sentence_end", "speech_timeout", "smart_turn"] = Field(
        "sentence_end", description=(
            "`sentence_end`: a transcript that is a finished sentence ends the turn at once, "
            "anything else waits `turn.speech_timeout`; `speech_timeout`: always wait; "
            "`smart_turn`: pipecat's smart-turn model."))
    speech_timeout: float = Field(0.3, ge=0, le=10, description=(
        "Seconds of silence after the VAD's stop before the turn ends."))
    sentence_min_words: int = Field(3, ge=1, le=50, description=(
        "Words a finished sentence needs to end the turn at once (\"Stop!\" alone waits)."))
    speculate: bool = Field(False, description=(
        "Start the LLM on the pause's transcript (`stt.early_secs`) when it is ready before "
        "the VAD stop and is a finished sentence; the answer is held, and spoken only if "
        "the turn then ends with the same words; off: on two cores it did not win "
        "([decision 13](decisions.md#13-transcribe-in-the-pause-start-the-llm-on-it-only-"
        "where-that-wins)). Needs "
        "`turn.stop_strategy` sentence_end and the whisper engine with `stt.early_secs`."))
    interruptions: bool = Field(True, description="User speech interrupts the bot.")
    half_duplex: bool = Field(False, description=(
        "Mute user input while the bot speaks (open speakers, no echo cancellation)."))
    warmup: bool = Field(True, description=(
        "Run every model once at start so that the first turn is not slow."))


class FileConfig(Section):
    input: str = Field("", description="File transport: the user's speech (WAV, FLAC or OGG).")
    output: str = Field("", description="File transport: WAV of the bot's speech.")
    timeline: str = Field("", description="File transport: JSONL timeline (wins over `timeline`).")
    tail_secs: float = Field(20.0, ge=0, le=600, description=(
        "Longest wait for the bot after the input ends, seconds."))


class WebRTCConfig(Section):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(7860, ge=1, le=65535, description="Port to listen on.")
    https: bool = Field(False, description=(
        "Serve the page over TLS (the microphone on any other device needs it)."))
    cert: str = Field("", description=(
        "PEM certificate for https; empty: a self-signed one, made and cached."))
    key: str = Field("", description="PEM private key of `webrtc.cert`.")
    playground: bool = Field(False, description=(
        "Also serve pipecat's prebuilt client at `/playground/` (loads code from the "
        "internet)."))
    jitter_frames: int = Field(2, ge=1, le=15, description=(
        "Microphone packets (20 ms each) held to reorder them; a lost one is skipped once "
        "this many more arrived. Raise it on a link that reorders packets."))

    @model_validator(mode="after")
    def _cert_and_key(self) -> WebRTCConfig:
        if bool(self.cert) != bool(self.key):
            missing = "webrtc.key" if self.cert else "webrtc.cert"
            raise ConfigError(missing, "give both webrtc.cert and webrtc.key (PEM files), "
                                       "or neither")
        return self


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class AppConfig(BaseSettings):
    """All settings. ``AppConfig(...)`` in code is the defaults of its profile plus what it is
    given; :func:`load_config` adds the YAML file, the environment and the flags."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="_", env_nested_max_split=1,
        extra="forbid", coerce_numbers_to_str=True)

    transport: Literal["webrtc", "local", "file"] = Field("webrtc", description=(
        "Where the audio comes from and goes to ([Transports](#transports))."))
    profile: Literal["tuned", "stock"] = Field("tuned", description=(
        "Defaults of the latency settings: `tuned` for speed, `stock` = pipecat's defaults."))
    log_level: Annotated[Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"],
                         BeforeValidator(_upper)] = Field("INFO", description="Log level.")
    timeline: str = Field("", description="JSONL timeline of the session (any transport).")
    llm: LLMConfig = Field(default_factory=LLMConfig)
    stt: STTConfig = Field(default_factory=STTConfig)
    tts: TTSConfig = Field(default_factory=TTSConfig)
    vad: VADConfig = Field(default_factory=VADConfig)
    turn: TurnConfig = Field(default_factory=TurnConfig)
    file: FileConfig = Field(default_factory=FileConfig)
    webrtc: WebRTCConfig = Field(default_factory=WebRTCConfig)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the other layers are read by load_config, in its order

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return _merge(_nest(PROFILE_DEFAULTS.get(data.get("profile", "tuned"), {})), data)
        return data

    @model_validator(mode="after")
    def _speculation(self) -> AppConfig:
        # Asked for explicitly; a profile's default is simply idle without an early transcript.
        if self.turn.speculate and "speculate" in self.turn.model_fields_set:
            needs = [what for what, ok in (
                ("turn.stop_strategy sentence_end", self.turn.stop_strategy == "sentence_end"),
                ("stt.engine whisper", self.stt.engine == "whisper"),
                ("stt.early_secs above 0", self.stt.early_secs > 0)) if not ok]
            if needs:
                raise ConfigError("turn.speculate", "starts the LLM on the pause's transcript, "
                                  f"so it needs {' and '.join(needs)}")
        return self

    @model_validator(mode="after")
    def _file_transport(self) -> AppConfig:
        for name in ("input", "output"):
            if self.transport == "file" and not getattr(self.file, name):
                raise ConfigError(f"file.{name}", f"the file transport needs --{name} WAV")
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data for logs; a secret shows as ``**********``."""
        return self.model_dump(mode="json")

    @property
    def timeline_path(self) -> str:
        return self.file.timeline or self.timeline


@functools.cache
def fields() -> dict[str, FieldInfo]:
    """Every setting's dotted name and field, in declaration order."""
    out: dict[str, FieldInfo] = {}
    for name, info in AppConfig.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, Section):
            out |= {f"{name}.{key}": sub for key, sub in section.model_fields.items()}
        else:
            out[name] = info
    return out


def setting_names() -> list[str]:
    return list(fields())


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.replace(".", "_").upper()


def load_config(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """The settings from their layers (``overrides``: dotted name -> value, from the flags)."""
    flags = dict(overrides or {})
    _known(flags, "")
    layers = {**(read_yaml(config_file) if config_file else {}), **read_env(environ), **flags}
    try:
        return AppConfig(**_nest(layers))
    except ValidationError as e:
        raise _config_error(e) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file of settings as {dotted name: value}."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError("--config", f"cannot read {p}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError("--config", f"{p} is not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError("--config", f"{p} must hold a mapping of settings")
    return _known(_flat(data), f" in {p}")


def read_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings in the environment (default ``os.environ``) as {dotted name: text}."""
    environ = os.environ if environ is None else environ
    source = EnvSettingsSource(AppConfig)
    source.env_vars = {k.lower(): v for k, v in environ.items()}  # the mapping to read
    try:
        given = _flat(source())
    except SettingsError as e:
        raise ConfigError("environment", str(e)) from None
    nomad = {name: environ[var] for var, name in FOREIGN_ENV.items() if environ.get(var)}
    return nomad | _known(given, " in the environment")


def _flat(tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= {f"{key}.{sub}": v for sub, v in value.items()}
        else:
            out[str(key)] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flat.items():
        section, _, key = name.rpartition(".")
        (out.setdefault(section, {}) if section else out)[key] = value
    return out


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = _merge(out[key], value) if both else value
    return out


def _known(flat: dict[str, Any], where: str) -> dict[str, Any]:
    known = fields().keys() | AppConfig.model_fields.keys()  # a section: pydantic says more
    for name in flat:
        if name not in known:
            raise ConfigError(name, f"unknown setting{where}")
    return flat


def _config_error(error: ValidationError) -> ConfigError:
    """The first problem of ``error`` as a ConfigError naming the setting."""
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"])
    kind, got = first["type"], first.get("input")
    cause = first.get("ctx", {}).get("error")
    info = fields().get(name)
    if info is not None and info.annotation is SecretStr:
        got = "***"  # a secret never reaches an error message
    if isinstance(cause, ConfigError):
        return cause
    if kind == "extra_forbidden":
        return ConfigError(name, "unknown setting")
    if kind == "literal_error" and info is not None:
        choices = ", ".join(str(c) for c in get_args(info.annotation))
        return ConfigError(name, f"must be one of {choices}, got {got!r}")
    if kind in ("greater_than_equal", "less_than_equal") and info is not None:
        lo, hi = bounds(info)
        return ConfigError(name, f"must be between {lo:g} and {hi:g}, got {got}")
    for prefix, what in (("int", "an integer"), ("float", "a number"), ("bool", "true or false")):
        if kind.startswith(prefix + "_"):
            return ConfigError(name, f"must be {what}, got {got!r}")
    if kind == "string_too_short":
        return ConfigError(name, "must not be empty")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return ConfigError(name, "must be a mapping of settings")
    if cause is not None:
        return ConfigError(name, str(cause))
    return ConfigError(name, f"{first['msg']}, got {got!r}")


def bounds(info: FieldInfo) -> tuple[float, float]:
    """A numeric setting's (lowest, highest) allowed value."""
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), float("-inf"))
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), float("inf"))
    return lo, hi
