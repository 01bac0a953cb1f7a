"""The whole playbook on three real namespaced hosts: `molecule test` (scenario `default`).

create (namespaces, overlays, sshd; signed release-shaped Nomad artifact served inside the test
network), converge (playbook.yaml), idempotence (changed=0), check mode, side effect (a
tampered zip and a foreign signature are refused), verify (by meaning), destroy.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.molecule, pytest.mark.timeout(2700)]


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, overlay mounts, chroot)"
    for tool in ("ip", "debootstrap", "unshare", "chroot", "nc", "gpg", "gpgv"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH (scripts/setup.sh installs it)"
    return None


def test_molecule_default_scenario(
    ansible_tools: SimpleNamespace, request: pytest.FixtureRequest
) -> None:
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    # The scenario copies the controller's cached llama.cpp build to the ring hosts
    # (primacpp_llamacpp_bin_src): build it once here if no cached build exists.
    llama_bin = request.getfixturevalue("llama_bin")
    started = time.monotonic()
    result = ansible_tools.run(
        [ansible_tools.tool("molecule"), "test", "-s", "default"],
        timeout=2400,
        env={"NO_COLOR": "1", "PY_COLORS": "0", "MOLECULE_LLAMA_BIN_DIR": str(llama_bin)},
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    elapsed = time.monotonic() - started
    print(f"molecule test: rc={result.returncode} in {elapsed:.0f}s")
    assert result.returncode == 0, output[-12000:]
    # Every ring host ran the copied llama-server once (the role's smoke run).
    assert len(re.findall(r"llama-smoke on \S+: llama-server: one token", output)) >= 3, (
        output[-6000:])
    # The idempotence step ran and found nothing to change.
    assert re.search(r"idempotence: .*Executed: Successful", output), output[-6000:]
    for action in ("converge", "check", "side_effect", "verify"):
        assert re.search(rf"{action}: .*Executed: Successful", output), action
