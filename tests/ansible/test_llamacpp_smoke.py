"""The primacpp role's llama.cpp tasks run every binary they install, on the host itself.

A real `ansible-playbook` run on this machine (local connection, everything under a temporary
directory): the role installs the tests' portable build and smoke-runs it, a second run
changes nothing, and a planted llama-server that dies with SIGILL (what an -march=native build
from another CPU does) stops the play with the host, the binary and the cause. The molecule
scenario does the same on its namespaced hosts; this test gives the answer in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import yaml


def _playbook(tmp_path: Path, bin_src: Path) -> Path:
    home = tmp_path / "home"
    play = [{
        "name": "Install llama.cpp with the primacpp role's tasks",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "primacpp_home": str(home),
            "primacpp_bin_dir": str(home / "bin"),
            "primacpp_install_packages": False,
            "primacpp_llamacpp_bin_src": str(bin_src),
            "primacpp_llamacpp_bin_dir": str(tmp_path / "llama.cpp" / "bin"),
        },
        "tasks": [
            {"name": "Directories and tools",
             "ansible.builtin.include_role": {"name": "primacpp", "tasks_from": "packages.yml"}},
            {"name": "llama.cpp",
             "ansible.builtin.include_role": {"name": "primacpp", "tasks_from": "llamacpp.yml"}},
        ],
    }]
    path = tmp_path / f"play-{bin_src.name}.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path


def _play(ansible_tools: SimpleNamespace, playbook: Path) -> tuple[int, str]:
    result = ansible_tools.run(
        [ansible_tools.tool("ansible-playbook"), "-i", "localhost,", str(playbook)],
        timeout=300, env={"ANSIBLE_ROLES_PATH": str(ansible_tools.repo / "roles")})
    return result.returncode, result.stdout


def test_the_installed_build_is_run_once_and_a_second_run_changes_nothing(
    ansible_tools: SimpleNamespace, llama_bin: Path, tmp_path: Path
) -> None:
    playbook = _playbook(tmp_path, llama_bin)
    rc, out = _play(ansible_tools, playbook)
    assert rc == 0, out[-5000:]
    assert re.search(r"llama-smoke on [^:]+: llama-server: one token", out), out[-5000:]
    assert (tmp_path / "llama.cpp" / "bin" / "llama-server").is_file()
    rc, out = _play(ansible_tools, playbook)
    assert rc == 0, out[-5000:]
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s", out), out[-3000:]


def test_a_binary_that_dies_with_sigill_stops_the_play_naming_host_binary_and_cause(
    ansible_tools: SimpleNamespace, tmp_path: Path
) -> None:
    planted = tmp_path / "sigill-build"
    planted.mkdir()
    for name in ("llama-server", "ggml-rpc-server"):
        (planted / name).write_text("#!/bin/sh\nkill -ILL $$\n")
        (planted / name).chmod(0o755)
    rc, out = _play(ansible_tools, _playbook(tmp_path, planted))
    assert rc != 0
    failure = next((line for line in out.splitlines()
                    if line.startswith("fatal:") and "cannot run on this host" in line), "")
    installed = tmp_path / "llama.cpp" / "bin" / "llama-server"
    assert '"msg": "localhost:' in failure, out[-4000:]
    assert str(installed) in failure
    assert "SIGILL" in failure and "illegal instruction" in failure
