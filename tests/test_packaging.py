"""The installable package: pyproject.toml declares the runtime dependencies (the pins of
requirements.txt), and the wheel carries the app only, no test, bench or dev helpers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = {"tests", "bench", "devtools"}


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_pyproject_declares_the_runtime_requirements() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == requirement_lines(ROOT / "requirements.txt"), (
        "pyproject.toml [project].dependencies must list exactly the lines of requirements.txt")


def test_the_wheel_holds_the_app_and_its_dependencies_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for pkg in ROOT.iterdir():  # every top-level Python package, dev-only ones included
        if (pkg / "__init__.py").is_file():
            shutil.copytree(pkg, src / pkg.name, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("pipecatapp-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(meta_name).decode())
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert "pipecatapp" in top
    assert not top & DEV_ONLY, f"dev-only packages in the wheel: {sorted(top & DEV_ONLY)}"
    declared = sorted(meta.get_all("Requires-Dist") or [])
    expected = requirement_lines(ROOT / "requirements.txt")
    assert len(declared) == len(expected), declared
    for req in expected:
        name = req.split("[", 1)[0].split("=", 1)[0].split(">", 1)[0]
        assert any(d.startswith(name) for d in declared), (req, declared)


def test_llama_cpp_is_pinned_in_one_place() -> None:
    """requirements-llamacpp.txt is the only file that names the llama.cpp release: the build
    script, the embedded server and the primacpp role all read it."""
    from pipecatapp.embedded.server import llama_cpp_version

    version = llama_cpp_version()
    assert (ROOT / "roles/primacpp/files/requirements-llamacpp.txt").resolve() == (
        ROOT / "requirements-llamacpp.txt")
    tracked = subprocess.run(
        ["git", "grep", "-l", "-F", version, "--", ".", ":!docs/benchmarks.md"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.split()
    assert tracked == ["requirements-llamacpp.txt"], f"{version} is also written in {tracked}"
