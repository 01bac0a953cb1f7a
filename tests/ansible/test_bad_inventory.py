"""Inventory mistakes stop the real playbook before any change, naming the variable.

Every case runs `ansible-playbook playbook.yaml` on an inventory shaped like the example one
(inventory.yaml) with one mistake. The hosts point at 127.0.0.1 port 1, where nothing listens:
if the preflight play let a mistake through, the next play could not reach any host, so no
case can change anything, and the control case proves the preflight play lets a good inventory
through to the Nomad play.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

Inventory = dict[str, Any]

RING = ("node1", "node2", "node3")


def good_inventory() -> Inventory:
    unreachable = {
        "ansible_host": "127.0.0.1",
        "ansible_port": 1,
        "ansible_ssh_common_args": "-o ConnectTimeout=2",
    }
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "primacpp_world_size": "{{ groups['primacpp_ring'] | length }}",
            },
            "hosts": {name: dict(unreachable) for name in RING},
            "children": {
                "nomad_servers": {"hosts": {name: None for name in RING}},
                "nomad_clients": {"hosts": {name: None for name in RING}},
                "primacpp_ring": {
                    "hosts": {
                        name: {"primacpp_rank": rank, "primacpp_layer_window": window}
                        for rank, (name, window) in enumerate(zip(RING, (14, 8, 8), strict=True))
                    }
                },
                "pipecatapp_audio": {"hosts": {"node1": None}},
            },
        }
    }


def ring(inv: Inventory) -> dict[str, dict[str, Any]]:
    return inv["all"]["children"]["primacpp_ring"]["hosts"]


def groups(inv: Inventory) -> dict[str, Any]:
    return inv["all"]["children"]


def _drop_group(name: str) -> Callable[[Inventory], None]:
    def mutate(inv: Inventory) -> None:
        del groups(inv)[name]

    return mutate


def _even_servers(inv: Inventory) -> None:
    del groups(inv)["nomad_servers"]["hosts"]["node3"]


def _missing_rank(inv: Inventory) -> None:
    del ring(inv)["node2"]["primacpp_rank"]


def _rank_not_integer(inv: Inventory) -> None:
    ring(inv)["node2"]["primacpp_rank"] = "one"


def _ranks_with_gap(inv: Inventory) -> None:
    ring(inv)["node3"]["primacpp_rank"] = 3


def _duplicate_rank(inv: Inventory) -> None:
    ring(inv)["node3"]["primacpp_rank"] = 1


def _no_master(inv: Inventory) -> None:
    for offset, name in enumerate(RING):
        ring(inv)[name]["primacpp_rank"] = offset + 1


def _window_on_some_hosts(inv: Inventory) -> None:
    del ring(inv)["node3"]["primacpp_layer_window"]


def _window_zero(inv: Inventory) -> None:
    ring(inv)["node2"]["primacpp_layer_window"] = 0


def _world_size_set_by_hand(inv: Inventory) -> None:
    inv["all"]["vars"]["primacpp_world_size"] = 4


def _two_audio_nodes(inv: Inventory) -> None:
    groups(inv)["pipecatapp_audio"]["hosts"]["node2"] = None


def _ring_node_not_client(inv: Inventory) -> None:
    del groups(inv)["nomad_clients"]["hosts"]["node3"]


def _bad_gossip_key(inv: Inventory) -> None:
    inv["all"]["vars"]["nomad_gossip_key"] = "not-a-key"


def _bad_acl_secret(inv: Inventory) -> None:
    inv["all"]["vars"]["nomad_acl_bootstrap_secret"] = "hunter2"


CASES: list[tuple[str, Callable[[Inventory], None], list[str]]] = [
    (
        "no server group",
        _drop_group("nomad_servers"),
        ["'nomad_servers'", "preflight_server_group"],
    ),
    (
        "no client group",
        _drop_group("nomad_clients"),
        ["'nomad_clients'", "preflight_client_group"],
    ),
    ("no ring group", _drop_group("primacpp_ring"), ["'primacpp_ring'", "preflight_ring_group"]),
    (
        "no audio group",
        _drop_group("pipecatapp_audio"),
        ["'pipecatapp_audio'", "preflight_audio_group"],
    ),
    ("even server count", _even_servers, ["preflight_server_group", "has 2 servers", "odd"]),
    ("missing rank", _missing_rank, ["primacpp_rank", "node2"]),
    ("rank not an integer", _rank_not_integer, ["primacpp_rank", "node2"]),
    ("ranks with a gap", _ranks_with_gap, ["primacpp_rank", "0..2", "node3=3"]),
    ("duplicate rank", _duplicate_rank, ["primacpp_rank", "0..2", "node3=1"]),
    ("no master", _no_master, ["no master", "primacpp_rank 0"]),
    (
        "layer window on some hosts",
        _window_on_some_hosts,
        ["primacpp_layer_window", "world size 3"],
    ),
    ("layer window zero", _window_zero, ["primacpp_layer_window", "node2=0"]),
    ("world size set by hand", _world_size_set_by_hand, ["primacpp_world_size is 4"]),
    ("two audio nodes", _two_audio_nodes, ["preflight_audio_group", "exactly one host"]),
    ("ring node not a client", _ring_node_not_client, ["node3", "preflight_client_group"]),
    ("malformed gossip key", _bad_gossip_key, ["nomad_gossip_key", "32 random bytes"]),
    ("malformed ACL secret", _bad_acl_secret, ["nomad_acl_bootstrap_secret", "UUID"]),
]


def run_playbook(tools: SimpleNamespace, tmp_path: Path, inv: Inventory) -> str:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    result = tools.run(
        [tools.tool("ansible-playbook"), "-i", str(path), "playbook.yaml"], timeout=180
    )
    assert result.returncode != 0, result.stdout[-4000:]
    return result.stdout


def recap_changed(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", output, re.M)]


@pytest.mark.parametrize(("mistake", "expected"), [pytest.param(m, e, id=i) for i, m, e in CASES])
def test_bad_inventory_fails_before_any_change(
    ansible_tools: SimpleNamespace,
    tmp_path: Path,
    mistake: Callable[[Inventory], None],
    expected: list[str],
) -> None:
    inv = copy.deepcopy(good_inventory())
    mistake(inv)
    output = run_playbook(ansible_tools, tmp_path, inv)
    starts = [i for i in (output.find(m) for m in ("[ERROR]", "fatal: ", "failed: [")) if i >= 0]
    failure = output[min(starts) :] if starts else ""
    assert failure, output[-4000:]
    for needle in expected:
        assert needle in failure, f"{needle!r} not in the failure:\n{failure[:3000]}"
    # Stopped in the preflight play: no later play started, nothing changed, nothing reached.
    assert "TASK [preflight :" in output
    assert "PLAY [Install and configure Nomad" not in output, output[-3000:]
    assert "UNREACHABLE" not in output
    assert recap_changed(output) and set(recap_changed(output)) == {0}


def test_good_inventory_passes_preflight(ansible_tools: SimpleNamespace, tmp_path: Path) -> None:
    """Control: the same inventory without a mistake reaches the Nomad play (whose hosts
    cannot be reached, by design), so the failures above come from the checks."""
    output = run_playbook(ansible_tools, tmp_path, good_inventory())
    assert "PLAY [Install and configure Nomad servers and clients]" in output
    assert "UNREACHABLE" in output
    preflight = output[: output.index("PLAY [Install and configure Nomad")]
    assert "fatal: " not in preflight and "[ERROR]" not in preflight
    assert len(CASES) >= 8
