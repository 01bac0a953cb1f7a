"""Load the node-side scripts (files without a .py suffix) as modules, for checks and tests."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "roles" / "primacpp" / "files" / "primacpp-ring-launch"
WATCHDOG = ROOT / "roles" / "primacpp" / "files" / "primacpp-ring-watchdog"


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import the Python file ``path`` under ``name`` (default: its file name, ``_`` for ``-``)."""
    module_name = name or path.name.replace("-", "_")
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))
    spec = importlib.util.spec_from_loader(module_name, loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while being built
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
