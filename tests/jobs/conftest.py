"""Fixtures for the ring tests: which engines can run here, and the SmolLM2 model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipecatapp.embedded import models
from pipecatapp.embedded.server import llama_bin_dir

from .netns import can_make_namespaces

ENGINES = [
    pytest.param("rpc", id="llamacpp-rpc"),
    pytest.param("primacpp", id="primacpp", marks=pytest.mark.primacpp),
]


@pytest.fixture(scope="session")
def netns_ok() -> None:
    reason = can_make_namespaces()
    if reason:
        pytest.skip(f"ring tests need network namespaces: {reason}")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct (llama architecture, 30 layers) from the model package."""
    return models.smollm2_gguf()


def engine_bin_dir(engine: str) -> Path:
    """llama.cpp's bin dir for the RPC engine; $PRIMACPP_DIR for prima.cpp (else skip)."""
    if engine == "rpc":
        return llama_bin_dir()
    location = os.environ.get("PRIMACPP_DIR")
    if not location:
        pytest.skip("PRIMACPP_DIR is not set: point it at a prima.cpp build "
                    "(a directory with llama-server and llama-cli)")
    path = Path(location).expanduser()
    missing = [b for b in ("llama-server", "llama-cli") if not (path / b).is_file()]
    if missing:
        pytest.fail(f"PRIMACPP_DIR={path} lacks {', '.join(missing)}")
    return path


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, netns_ok: None) -> tuple[str, Path]:
    name = str(request.param)
    return name, engine_bin_dir(name)
