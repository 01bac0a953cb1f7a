"""Running the Ansible tool chain from the checkout's virtualenv, with a timeout.

Handed to the tests through the `ansible_tools` fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script installed beside the running interpreter."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


def run(
    args: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository root; stdout and stderr merged."""
    merged = dict(os.environ)
    merged.setdefault("ANSIBLE_HOME", str(REPO / "build" / "ansible-home"))
    merged["ANSIBLE_NOCOLOR"] = "1"
    merged["PATH"] = f"{BIN}{os.pathsep}{merged.get('PATH', '')}"
    merged.update(env or {})
    return subprocess.run(
        args,
        cwd=cwd,
        env=merged,
        capture_output=False,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def ansible_tools() -> SimpleNamespace:
    """`run(args, timeout=...)`, `tool(name)` and the repository root."""
    return SimpleNamespace(run=run, tool=tool, repo=REPO)
