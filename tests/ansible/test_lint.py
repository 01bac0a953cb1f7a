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


def test_shell_scripts_pass_shellcheck(ansible_tools: SimpleNamespace) -> None:
    """scripts/*.sh (acceptance.sh reads the playbook's ring.vars.hcl) pass shellcheck."""
    scripts = sorted(str(p.relative_to(ansible_tools.repo))
                     for p in (ansible_tools.repo / "scripts").glob("*.sh"))
    assert "scripts/acceptance.sh" in scripts
    result = ansible_tools.run(["shellcheck", "--severity=style", *scripts], timeout=120)
    assert result.returncode == 0, result.stdout[-6000:]


def test_acceptance_uses_the_rendered_ring_variables(ansible_tools: SimpleNamespace) -> None:
    """Without a rendered ring.vars.hcl next to the inventory, acceptance.sh stops and says
    where the playbook puts it (before it touches any cluster)."""
    result = ansible_tools.run(
        ["bash", "scripts/acceptance.sh", "--no-provision"],
        timeout=60,
        env={"INVENTORY": "/nonexistent-dir/inventory.yaml"},
    )
    assert result.returncode == 1, result.stdout
    assert "/nonexistent-dir/ring.vars.hcl does not exist: run the playbook" in result.stdout
