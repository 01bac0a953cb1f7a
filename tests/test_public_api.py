"""The app uses pipecat, faster-whisper and RealtimeSTT through their public API only.

Scope: every module of the ``pipecatapp`` package. Three checks:

1. no import of a private name or module of those libraries
   (``from pipecat.x import _y``, ``import pipecat.x._y``);
2. no access to another object's private attribute (``obj._name`` where ``obj`` is not
   ``self``/``cls``): from outside a class, a private name is never ours to touch;
3. no class of ours that subclasses one of theirs overrides, reads or writes a private
   name of that class (``_name`` defined by the library class or any library base of it:
   methods, class attributes, or ``self._name`` in its source). That also catches a
   private attribute of ours that happens to share a name with one of theirs, which
   would silently break both.

``ISOLATED`` names the modules allowed to do any of this, one per library that lacks a hook
(faster-whisper's encoder window, aiortc's jitter buffer), each with its own test that
fails when an upgrade changes what it relies on.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipecatapp"
LIBRARIES = ("pipecat", "faster_whisper", "RealtimeSTT", "aiortc")
ISOLATED = {"pipecatapp/upstream.py", "pipecatapp/transports/rtp_jitter.py"}
OWN_NAMES = ("self", "cls")
_SELF_PRIVATE = re.compile(r"\bself\.(_[A-Za-z0-9]\w*)")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _library(module: str) -> bool:
    return module.split(".")[0] in LIBRARIES


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _import_findings(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _library(node.module):
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"line {node.lineno}: private module {node.module}")
            found += [f"line {node.lineno}: private name {node.module}.{a.name}"
                      for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: private module {a.name}" for a in node.names
                      if _library(a.name) and any(_private(p) for p in a.name.split("."))]
    return found


def _foreign_private_access(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in OWN_NAMES:
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) \
                and owner.func.id == "super":
            continue  # checked against the library classes in test 3
        found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def _findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return _import_findings(tree) + _foreign_private_access(tree)


def _source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def _defined_privates(cls: type, source: str) -> set[str]:
    """Private names the class body defines (not ones Python adds, such as _abc_impl)."""
    return {n for n in vars(cls)
            if _private(n) and re.search(rf"(\bdef {n}\b|^\s*{n}\s*[:=])", source, re.M)}


@cache
def _library_privates(cls: type) -> frozenset[str]:
    """Private names a library class and its library bases define or use on ``self``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if _library(klass.__module__):
            source = _source(klass)
            names |= _defined_privates(klass, source) | set(_SELF_PRIVATE.findall(source))
    return frozenset(names)


def _own_private_uses(cls: type) -> set[str]:
    source = _source(cls)
    names = _defined_privates(cls, source) | set(_SELF_PRIVATE.findall(source))
    names |= set(re.findall(r"\bsuper\(\)\.(_[A-Za-z0-9]\w*)", source))
    return names


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _classes(path: Path) -> list[type]:
    if path.name == "__main__.py":
        return []  # running it is its only job; it defines no classes
    module = importlib.import_module(_module_name(path))
    return [c for c in vars(module).values()
            if inspect.isclass(c) and c.__module__ == module.__name__]


CHECKED = [p for p in _modules() if _rel(p) not in ISOLATED]


@pytest.mark.parametrize("path", CHECKED, ids=_rel)
def test_no_private_imports_or_foreign_private_attributes(path: Path) -> None:
    assert _findings(path) == [], f"{_rel(path)} reaches into a private API"


@pytest.mark.parametrize("path", CHECKED, ids=_rel)
def test_subclasses_touch_no_private_name_of_a_library_class(path: Path) -> None:
    problems = []
    for cls in _classes(path):
        library_bases = [b for b in cls.__mro__[1:] if _library(b.__module__)]
        if not library_bases:
            continue
        clash = _own_private_uses(cls) & _library_privates(cls)
        if clash:
            problems.append(f"{cls.__name__}: {sorted(clash)} are private names of "
                            f"{library_bases[0].__module__}.{library_bases[0].__qualname__}")
    assert problems == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The three rules, on code that breaks each (the old first-clause and turn-stop code)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from pipecat.utils.text.simple_text_aggregator import _LookaheadState\n"
        "import pipecat.audio._private_mod\n"
        "def f(tts):\n"
        "    tts._text_aggregator = None\n"
        "    return super()._x, self._y\n",
        encoding="utf-8",
    )
    found = _findings(sample)
    assert any("_LookaheadState" in f for f in found)
    assert any("_private_mod" in f for f in found)
    assert any("tts._text_aggregator" in f for f in found)
    assert not any("_x" in f or "_y" in f for f in found)

    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy

    class Overrides(SpeechTimeoutUserTurnStopStrategy):
        async def _handle_transcription(self, frame: object) -> None:
            if self._vad_stopped and self._mine:
                await self._maybe_trigger_user_turn_stopped()

    clash = _own_private_uses(Overrides) & _library_privates(Overrides)
    assert {"_handle_transcription", "_vad_stopped", "_maybe_trigger_user_turn_stopped"} <= clash
    assert "_mine" not in clash


# Internals without a leading underscore: faster-whisper's pieces behind ``transcribe`` and
# RealtimeSTT's inner modules. Only the isolated module may name them.
UNMARKED_INTERNALS = re.compile(
    r"\.model\.(generate|encode|is_multilingual)\b|\bget_prompt\b|\bhf_tokenizer\b"
    r"|\bfeature_extractor\b|\bget_suppressed_tokens\b"
    r"|faster_whisper\.(transcribe|audio|tokenizer|feature_extractor)\b"
    r"|RealtimeSTT\.(core|audio_recorder|transcription_engines)\b")


@pytest.mark.parametrize("path", CHECKED, ids=_rel)
def test_unmarked_library_internals_stay_in_the_isolated_module(path: Path) -> None:
    hits = [f"{_rel(path)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if UNMARKED_INTERNALS.search(line)]
    assert hits == [], f"move these into {sorted(ISOLATED)}"
