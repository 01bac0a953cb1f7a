"""Shared fixtures: the tiny GGUF and its real llama-server, SmolLM2 on llama-server,
espeak-ng user speech and Whisper transcription (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from devtools import utterances
from devtools.tinygguf import write_tiny_gguf
from pipecatapp.embedded import models
from pipecatapp.embedded.server import LlamaServer, llama_bin_dir


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    """The llama.cpp bin directory (builds it once if no cached build exists)."""
    return llama_bin_dir()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF with a ChatML template (about 0.6 MB)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf", seed=0)


@pytest.fixture
def tiny_server(tiny_gguf: Path, llama_bin: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    """A real llama-server on the tiny GGUF, ready, on a free loopback port (per test)."""
    server = LlamaServer(tiny_gguf, threads=1, ctx=2048, binary=llama_bin / "llama-server",
                         log_path=tmp_path / "llama-server.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def smollm2_server(
    llama_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """A real llama-server on SmolLM2-135M-Instruct, 1 thread (session); temperature is the
    client's choice."""
    log = tmp_path_factory.mktemp("smollm2") / "llama-server.log"
    server = LlamaServer(models.smollm2_gguf(), threads=1, ctx=4096,
                         binary=llama_bin / "llama-server", log_path=log)
    server.start()
    try:
        server.wait_ready(timeout=120)
        yield server
    finally:
        server.stop()


EspeakWav = Callable[..., Path]


@pytest.fixture(scope="session")
def espeak_wav() -> EspeakWav:
    """``espeak_wav(text, path, voice="en-us+m7", rate=125) -> Path``: 16 kHz mono
    16-bit user speech in an espeak-ng voice (unlike the bot's Piper voice)."""

    def make(text: str, path: Path, voice: str = utterances.DEFAULT_VOICE,
             rate: int = utterances.DEFAULT_RATE,
             **kwargs: float) -> Path:
        return utterances.espeak_wav(text, path, voice=voice, rate=rate, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def transcribe() -> Callable[[Path], str]:
    """``transcribe(wav_path) -> str``: faster-whisper with the embedded Whisper base,
    greedy, offline."""
    return utterances.whisper_transcriber(beam_size=1)
