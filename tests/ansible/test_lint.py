"""The collection passes the linters the project requires, and the playbook parses."""

from __future__ import annotations

from types import SimpleNamespace


def test_ansible_lint_production_profile_reports_nothing(ansible_tools: SimpleNamespace) -> None:
    result = ansible_tools.run(
        [ansible_tools.tool("ansible-lint"), "--profile", "production", "--nocolor"], timeout=600
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "0 failure(s), 0 warning(s)" in result.stdout
    assert "Profile 'production' was required, and it passed" in result.stdout


def test_yamllint_reports_nothing(ansible_tools: SimpleNamespace) -> None:
    result = ansible_tools.run(
        [ansible_tools.tool("yamllint"), "--strict", "--format", "parsable", "."], timeout=300
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert result.stdout.strip() == ""


def test_playbook_syntax_check_passes(ansible_tools: SimpleNamespace) -> None:
    result = ansible_tools.run(
        [ansible_tools.tool("ansible-playbook"), "--syntax-check", "playbook.yaml"], timeout=300
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "playbook: playbook.yaml" in result.stdout
