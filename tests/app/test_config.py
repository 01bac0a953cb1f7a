"""Configuration: layering, validation errors that name the setting, secret redaction."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipecatapp.config import AppConfig, load_config
from pipecatapp.errors import ConfigError


def test_defaults_are_the_tuned_profile():
    cfg = load_config(environ={})
    assert cfg.profile == "tuned"
    assert cfg.transport == "webrtc"
    assert cfg.stt.beam_size == 1
    assert cfg.turn.stop_strategy == "sentence_end"
    assert cfg.turn.interruptions is True
    assert cfg.turn.half_duplex is False
    assert cfg.llm.max_tokens == 150
    assert cfg.llm.service == "primacpp-api"
    assert cfg.llm.embedded_batch_threads == 0  # every core, for the prompt only
    assert "short" in cfg.llm.system_prompt


def test_stock_profile_reproduces_pipecat_defaults():
    cfg = load_config(environ={"PIPECATAPP_PROFILE": "stock"})
    assert cfg.stt.beam_size == 5
    assert cfg.turn.stop_strategy == "smart_turn"
    assert (cfg.vad.confidence, cfg.vad.start_secs, cfg.vad.stop_secs, cfg.vad.min_volume) == (
        0.7, 0.2, 0.2, 0.6,
    )
    assert cfg.turn.warmup is False
    assert cfg.llm.embedded_batch_threads == 1  # llama-server's -tb is its -t


def test_layers_file_then_env_then_cli(tmp_path):
    conf = tmp_path / "app.yaml"
    conf.write_text(
        "transport: local\n"
        "stt:\n  beam_size: 3\n  cpu_threads: 1\n"
        "llm:\n  max_tokens: 80\n  url: http://file:1/v1\n"
    )
    env = {"PIPECATAPP_STT_BEAM_SIZE": "4", "PIPECATAPP_LLM_URL": "http://env:2/v1"}
    cfg = load_config(config_file=conf, environ=env, overrides={"llm.url": "http://cli:3/v1"})
    assert cfg.transport == "local"  # file only
    assert cfg.stt.cpu_threads == 1  # file only
    assert cfg.stt.beam_size == 4  # env beats file
    assert cfg.llm.max_tokens == 80
    assert cfg.llm.url == "http://cli:3/v1"  # CLI beats env


def test_profile_defaults_yield_to_explicit_settings():
    cfg = load_config(environ={}, overrides={"profile": "stock", "stt.beam_size": "2"})
    assert cfg.stt.beam_size == 2
    assert cfg.turn.stop_strategy == "smart_turn"


def test_pipecatapp_names_win_over_nomads_own_variables():
    cfg = load_config(environ={"NOMAD_ADDR": "http://nomad:4646",
                               "PIPECATAPP_LLM_NOMAD_ADDR": "http://mine:4646"})
    assert cfg.llm.nomad_addr == "http://mine:4646"


def test_nomad_environment_is_read():
    cfg = load_config(
        environ={
            "NOMAD_ADDR": "http://127.0.0.1:4646",
            "NOMAD_TOKEN": "tok-123456",
            "PIPECATAPP_LLM_SERVICE": "my-llm",
        }
    )
    assert cfg.llm.nomad_addr == "http://127.0.0.1:4646"
    assert cfg.llm.nomad_token.get_secret_value() == "tok-123456"
    assert cfg.llm.service == "my-llm"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stt.beam_size": "11"}, "stt.beam_size: must be between 1 and 10"),
        ({"stt.beam_size": "three"}, "stt.beam_size: must be an integer"),
        ({"llm.max_tokens": "0"}, "llm.max_tokens: must be between 1 and 4096"),
        ({"llm.url": "localhost:8080"}, "llm.url: must start with http:// or https://"),
        ({"transport": "carrier-pigeon"}, "transport: must be one of webrtc, local, file"),
        ({"stt.engine": "vosk"}, "stt.engine: must be one of whisper, realtimestt"),
        ({"tts.engine": "say"}, "tts.engine: must be one of piper, melotts"),
        ({"turn.half_duplex": "maybe"}, "turn.half_duplex: must be true or false"),
        ({"vad.confidence": "1.5"}, "vad.confidence: must be between 0 and 1"),
        ({"webrtc.port": "0"}, "webrtc.port: must be between 1 and 65535"),
        ({"stt.nonsense": "1"}, "stt.nonsense: unknown setting"),
        ({"transport": "file", "file.output": "o.wav"}, "file.input: the file transport needs"),
        ({"profile": "fast"}, "profile: must be one of tuned, stock"),
        ({"log_level": "loud"}, "log_level: must be one of TRACE, DEBUG, INFO, WARNING, ERROR"),
        ({"stt": "5"}, "stt: must be a mapping of settings"),
        ({"tts.apology": "  "}, "tts.apology: must not be empty"),
        ({"webrtc.cert": "c.pem"}, "webrtc.key: give both webrtc.cert and webrtc.key"),
        ({"tts.engine": "melotts"}, "tts.melo_config: MeloTTS needs its local config.json"),
    ],
)
def test_bad_values_name_the_setting(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, overrides=overrides)
    assert str(err.value).startswith(message)


def test_bad_environment_value_names_the_setting():
    with pytest.raises(ConfigError, match=r"^stt\.cpu_threads: must be an integer"):
        load_config(environ={"PIPECATAPP_STT_CPU_THREADS": "many"})
    with pytest.raises(ConfigError, match=r"^stt\.beem_size: unknown setting in the environment"):
        load_config(environ={"PIPECATAPP_STT_BEEM_SIZE": "1"})


def test_environment_names_are_case_insensitive_and_values_typed():
    cfg = load_config(environ={
        "pipecatapp_turn_half_duplex": "yes", "PIPECATAPP_LOG_LEVEL": "debug",
        "PIPECATAPP_VAD_START_SECS": "0.1", "PIPECATAPP_CACHE_DIR": "/x"})
    assert cfg.turn.half_duplex is True and cfg.log_level == "DEBUG"
    assert cfg.vad.start_secs == 0.1


def test_yaml_errors_name_the_key(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("stt:\n  beam: 2\n")
    with pytest.raises(ConfigError, match=r"^stt\.beam: unknown setting in"):
        load_config(config_file=conf, environ={})
    conf.write_text("stt: [1, 2\n")
    with pytest.raises(ConfigError, match=r"^--config: .* is not valid YAML"):
        load_config(config_file=conf, environ={})
    with pytest.raises(ConfigError, match=r"^--config: cannot read"):
        load_config(config_file=tmp_path / "missing.yaml", environ={})


def test_secrets_are_redacted_in_repr_and_dump():
    secret = "sk-very-secret-key-1234"
    cfg = load_config(
        environ={"PIPECATAPP_LLM_API_KEY": secret, "NOMAD_TOKEN": "nomad-secret-token"}
    )
    assert cfg.llm.api_key.get_secret_value() == secret
    for shown in (repr(cfg), str(cfg), cfg.model_dump_json(), str(cfg.redacted())):
        assert secret not in shown and "nomad-secret-token" not in shown
    dumped = cfg.redacted()
    assert dumped["llm"]["api_key"] == dumped["llm"]["nomad_token"] == "**********"
    assert load_config(environ={}).redacted()["llm"]["api_key"] == ""


def test_a_bad_secret_is_not_repeated_in_the_error(tmp_path):
    conf = tmp_path / "secret.yaml"
    conf.write_text("llm:\n  nomad_token: [abc-secret-1]\n")
    with pytest.raises(ConfigError, match=r"^llm\.nomad_token: .*got '\*\*\*'") as err:
        load_config(config_file=conf, environ={})
    assert "abc-secret-1" not in str(err.value)


def test_the_process_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("PIPECATAPP_STT_BEAM_SIZE", "3")
    monkeypatch.setenv("NOMAD_TOKEN", "tok-abcdef")
    cfg = load_config()
    assert cfg.stt.beam_size == 3
    assert cfg.llm.nomad_token.get_secret_value() == "tok-abcdef"


def test_a_config_built_in_code_is_checked_too():
    stock = AppConfig(profile="stock", stt={"beam_size": 3})
    assert (stock.stt.beam_size, stock.stt.window_secs, stock.turn.warmup) == (3, 30.0, False)
    with pytest.raises(ValidationError, match="cpu_threads"):
        stock.stt.cpu_threads = 0
    with pytest.raises(ValidationError, match="beam_size"):
        AppConfig(stt={"beam_size": 0})
