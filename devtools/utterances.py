"""User speech for tests and benchmarks, transcription of what the bot said, and how far a
transcript is from what was said.

``espeak_wav`` makes a 16 kHz mono 16-bit WAV with espeak-ng (a formant voice, unlike the
bot's Piper voice) and sox. The default voice and rate were chosen by transcribing with
Whisper base: ``en-us+m7`` at 125 words/min is heard word for word (greedy and beam 5) for
"What is the capital of France?", "Who wrote Romeo and Juliet?", "What is the largest planet
in our solar system?", "How many legs does a spider have?" and "Stop.", where plain ``en-us``
at 160 is heard as "What is the capital and friends?". See CONTRIBUTING.md (Test fixtures
and the test voice).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipecatapp.errors import EngineUnavailable

DEFAULT_VOICE = "en-us+m7"
DEFAULT_RATE = 125
# 30 ms between words: on an Intel Xeon (AVX-512, AMX) Whisper base heard the gapless
# "capital of France" as "capital on France" or "a capital of friends" in some runs.
DEFAULT_WORD_GAP = 3
SAMPLE_RATE = 16000


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(f"{name} is not installed: apt-get install {package}")
    return path


def sox(*args: str) -> None:
    """Run sox with ``args``. ``-R`` seeds its dither with a fixed number, so the same input
    gives the same samples on every run (without it each run's audio differs slightly)."""
    subprocess.run([_tool("sox", "sox"), "-R", *args], check=True, capture_output=True,
                   timeout=60)


def espeak_wav(
    text: str,
    path: Path,
    *,
    voice: str = DEFAULT_VOICE,
    rate: int = DEFAULT_RATE,
    word_gap: int = DEFAULT_WORD_GAP,
    lead_silence: float = 0.3,
    tail_silence: float = 0.5,
) -> Path:
    """Speak ``text`` into ``path`` as 16 kHz mono 16-bit PCM, padded with silence."""
    espeak = _tool("espeak-ng", "espeak-ng")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [espeak, "-v", voice, "-s", str(rate), "-g", str(word_gap), "-w", str(raw), text],
            check=True, capture_output=True, timeout=60,
        )
        sox(str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
            str(path), "pad", f"{lead_silence:.3f}", f"{tail_silence:.3f}")
    return path


def whisper_transcriber(
    *, beam_size: int = 1, cpu_threads: int = 2
) -> Callable[[Path], str]:
    """A function wav -> text using faster-whisper with the embedded Whisper base, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    from pipecatapp.embedded.models import whisper_base_dir

    model = WhisperModel(
        str(whisper_base_dir()), device="cpu", compute_type="int8", cpu_threads=cpu_threads,
        local_files_only=True,
    )

    def transcribe(wav: Path) -> str:
        segments, _info = model.transcribe(
            str(wav), beam_size=beam_size, language="en", condition_on_previous_text=False
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    return transcribe


def words(text: str) -> list[str]:
    """Lower-case words of ``text``, punctuation dropped (Whisper's casing and commas vary)."""
    cleaned = "".join(c.lower() if c.isalnum() or c in "' " else " " for c in text)
    return cleaned.split()


def word_errors(heard: str, expected: str) -> int:
    """Word-level edit distance (substitutions, insertions, deletions) between two texts."""
    a, b = words(heard), words(expected)
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]
