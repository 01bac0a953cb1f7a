"""The README's file-mode quick start, word for word, from a directory that is not the
checkout (as a user runs it): its two commands, read from the README, in a fresh folder."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from pipecatapp.timeline import read_timeline

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _file_mode_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Try it with a recorded question (file mode)", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the README's file-mode section has no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_file_mode_commands_answer_from_any_directory(tmp_path):
    commands = _file_mode_commands()
    assert commands[-1].startswith("scripts/run.sh"), commands
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for command in commands:
        # scripts/run.sh is the checkout's; every other word stays as the README writes it.
        line = command.replace("scripts/run.sh", str(ROOT / "scripts" / "run.sh"), 1)
        proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=600, check=False)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
    turn = next(e for e in read_timeline(tmp_path / "turns.jsonl") if e["event"] == "turn")
    assert "capital" in turn["text"].lower() and "paris" in turn["reply"].lower(), turn
    assert (tmp_path / "answer.wav").stat().st_size > 44, "no answer was written"
