"""The nomad role where systemd runs: the unit starts, ACLs are bootstrapped once with a secret
the play generates (the operator gives none) and keeps on the controller, never printed; a
second run changes nothing, and a configuration change goes through the validate handler and
restarts the agent.

The host is a podman container (runc) with systemd as PID 1 (molecule/default/podmanhost.py);
the release comes from a local artifact directory (`nomad_artifact_dir`, the air-gapped path),
made by fake_release.py: the agent is `nomad_test_double`, which sleeps like an agent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytestmark = [pytest.mark.molecule, pytest.mark.timeout(1500)]

SCENARIO = Path(__file__).resolve().parents[2] / "molecule" / "default"
HOST = "pipecatapp-nomad-systemd"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def in_host(*args: str) -> str:
    result = subprocess.run(
        [*PODMAN, "exec", HOST, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def systemd_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("needs root, podman and runc (apt install podman runc)")
    work = tmp_path_factory.mktemp("nomad-systemd")
    python = os.environ.get("PYTHON", "python3")
    subprocess.run(
        [
            python,
            str(SCENARIO / "fake_release.py"),
            "--out",
            str(work / "release"),
            "--version",
            "1.10.0",
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    subprocess.run(
        [python, str(SCENARIO / "podmanhost.py"), "up", HOST],
        check=True,
        timeout=900,
        capture_output=True,
    )
    release = work / "release"
    host = {
        "ansible_connection": "containers.podman.podman",
        "ansible_podman_extra_args": " ".join(PODMAN[1:]),
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    inventory = {
        "all": {
            "hosts": {HOST: host},
            "vars": {
                "nomad_artifact_dir": str(release / "nomad" / "1.10.0"),
                "nomad_gpg_key_file": str(release / "test-release-key.asc"),
                "nomad_gpg_fingerprint": (release / "fingerprint").read_text().strip(),
                "nomad_gossip_key_file": str(work / "gossip.key"),
                "nomad_apt_update_cache": False,
                "nomad_advertise_address": "127.0.0.1",
                # The container's hard open-file limit is 1024 (podmanhost.py).
                "nomad_limit_nofile": 1024,
                # No nomad_acl_bootstrap_secret: the play generates one and keeps it here.
                "nomad_acl_bootstrap_secret_file": str(work / "secrets" / "acl-bootstrap.secret"),
                # The container has no network (--network=none): render the rules, load nothing.
                "nomad_firewall_load": False,
            },
            "children": {
                "nomad_servers": {"hosts": {HOST: None}},
                "nomad_clients": {"hosts": {HOST: None}},
            },
        }
    }
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    yield work / "inventory.yaml"
    subprocess.run(
        [python, str(SCENARIO / "podmanhost.py"), "down", HOST],
        timeout=300,
        check=False,
        capture_output=True,
    )


def converge(tools: SimpleNamespace, inventory: Path, *extra: str) -> str:
    result = tools.run(
        [
            tools.tool("ansible-playbook"),
            "-i",
            str(inventory),
            str(SCENARIO / "systemd" / "nomad.yml"),
            *extra,
        ],
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-8000:]
    return result.stdout


def changed(output: str) -> int:
    match = re.search(rf"^{HOST}\s+: ok=\d+\s+changed=(\d+)", output, re.M)
    assert match, output[-3000:]
    return int(match.group(1))


def test_unit_starts_is_idempotent_and_restarts_on_change(
    ansible_tools: SimpleNamespace, systemd_host: Path
) -> None:
    first = converge(ansible_tools, systemd_host)
    assert changed(first) > 0
    # ACL bootstrap against the running agent (the double answers it like Nomad: once), with
    # the secret the play generated and stored on the controller (0600 in a 0700 directory).
    assert re.search(
        r"TASK \[nomad : Bootstrap the ACL system[^\n]*\n(?:[^\n]*\n)??changed: ", first
    )
    secret_file = systemd_host.parent / "secrets" / "acl-bootstrap.secret"
    secret = secret_file.read_text().strip()
    assert UUID.match(secret)
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert secret_file.parent.stat().st_mode & 0o777 == 0o700
    bootstrapped_with = in_host("cat", "/opt/nomad/data/nomad_test_double.acl-bootstrapped")
    assert bootstrapped_with == secret, "the agent was bootstrapped with another secret"
    assert secret not in first, "the bootstrap secret appeared in the play's output"
    assert "nomad_service_manager resolved to 'none'" not in first
    assert in_host("systemctl", "is-active", "nomad") == "active"
    assert in_host("systemctl", "is-enabled", "nomad") == "enabled"
    assert in_host("systemctl", "show", "-p", "User", "--value", "nomad") == "root"
    in_host("systemd-analyze", "verify", "/etc/systemd/system/nomad.service")
    pid_before = in_host("systemctl", "show", "-p", "MainPID", "--value", "nomad")
    assert int(pid_before) > 0

    again = converge(ansible_tools, systemd_host)
    assert changed(again) == 0
    assert "TASK [nomad : Bootstrap the ACL system" in again  # ran, answered "already done"
    assert secret_file.read_text().strip() == secret  # kept, not regenerated
    assert secret not in again
    assert in_host("systemctl", "show", "-p", "MainPID", "--value", "nomad") == pid_before

    changed_config = converge(ansible_tools, systemd_host, "-e", "nomad_log_level=DEBUG")
    assert "RUNNING HANDLER [nomad : Validate the Nomad configuration before restarting]" in (
        changed_config
    )
    assert "RUNNING HANDLER [nomad : Restart nomad]" in changed_config
    assert in_host("systemctl", "is-active", "nomad") == "active"
    pid_after = in_host("systemctl", "show", "-p", "MainPID", "--value", "nomad")
    assert pid_after not in ("0", pid_before)
    assert 'log_level  = "DEBUG"' in in_host("cat", "/etc/nomad.d/base.hcl")
    assert secret not in changed_config
    # The firewall rules are rendered (not loaded here): the Nomad ports, the node's address.
    rules = in_host("cat", "/etc/nftables.d/nomad.nft")
    assert "4646, 4647, 4648" in rules and "127.0.0.1" in rules
