"""``--profiles PROFILE@REV``: the voice suite runs a git revision's app beside this one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.voice import app_tree, split_profile
from pipecatapp.errors import ConfigError


def test_profile_names_and_revisions() -> None:
    assert split_profile("tuned") == ("tuned", "")
    assert split_profile("stock@HEAD~1") == ("stock", "HEAD~1")
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        split_profile("fast@HEAD")


def test_a_revision_is_exported_once_with_its_app(tmp_path: Path) -> None:
    tree = app_tree("HEAD", tmp_path)
    assert (tree / "pipecatapp" / "__main__.py").is_file()
    marker = tree / "pipecatapp" / "marker"
    marker.write_text("kept")
    assert app_tree("HEAD", tmp_path) == tree and marker.is_file()
    with pytest.raises(ConfigError, match="not a git revision"):
        app_tree("no-such-revision-here", tmp_path)
