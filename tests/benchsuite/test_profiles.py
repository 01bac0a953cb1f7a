"""``--profiles PROFILE@REV+NAME=VALUE``: the voice suite runs a git revision's app, or a
profile with a setting of its own, beside this one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.voice import ProfileResult, app_tree, count_outcomes, profile_settings, split_profile
from pipecatapp.errors import ConfigError


def test_profile_names_and_revisions() -> None:
    assert split_profile("tuned") == ("tuned", "")
    assert split_profile("stock@HEAD~1") == ("stock", "HEAD~1")
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        split_profile("fast@HEAD")


def test_a_profile_can_carry_settings_of_its_own() -> None:
    profile = "tuned@HEAD~1+turn.speculate=true+stt.early_secs=0.05"
    assert split_profile(profile) == ("tuned", "HEAD~1")
    assert profile_settings(profile) == ["turn.speculate=true", "stt.early_secs=0.05"]
    assert profile_settings("stock") == []
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        split_profile("tuned+speculate")


def test_outcomes_are_counted_from_the_lines_the_app_logs() -> None:
    result = ProfileResult("tuned")
    count_outcomes(result, "\n".join([
        "INFO early transcript used (1 used, 0 discarded)",
        "INFO early transcript discarded, the user went on (1 used, 1 discarded)",
        "INFO speculative answer kept (1 kept, 0 withdrawn)",
        "INFO speculative answer withdrawn, the user went on (1 kept, 1 withdrawn)",
        "INFO speculative answer withdrawn, the committed transcript differs (1 kept, 2 "
        "withdrawn)"]))
    assert (result.early_used, result.early_discarded, result.kept, result.withdrawn) == \
        (1, 1, 1, 2)


def test_a_revision_is_exported_once_with_its_app(tmp_path: Path) -> None:
    tree = app_tree("HEAD", tmp_path)
    assert (tree / "pipecatapp" / "__main__.py").is_file()
    marker = tree / "pipecatapp" / "marker"
    marker.write_text("kept")
    assert app_tree("HEAD", tmp_path) == tree and marker.is_file()
    with pytest.raises(ConfigError, match="not a git revision"):
        app_tree("no-such-revision-here", tmp_path)
