"""The watchdog's decisions (grace while loading, thresholds, lone restarts, backoff, no
flapping) and its Nomad API use against the fake Nomad (token refused, never logged)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from jobcheck.jobmodel import evaluate_job, load_var_file
from jobcheck.scripts import WATCHDOG, load_script

from .client_double import NomadClientDouble
from .fake_nomad import FakeNomad
from .ring_harness import JOB_FILE

wd = load_script(WATCHDOG)
JOB = {"ID": "primacpp", "TaskGroups": [{"Name": f"rank-{i}"} for i in range(3)]
       + [{"Name": "watchdog"}]}


def alloc(rank: int, *, state: str = "running", restarts: int = 0, ident: str = "",
          client: str = "running") -> dict[str, Any]:
    return {"ID": ident or f"alloc-{rank}", "TaskGroup": f"rank-{rank}", "DesiredStatus": "run",
            "ClientStatus": client, "CreateIndex": 10 + rank,
            "TaskStates": {"rank": {"State": state, "Restarts": restarts}}}


def view(*allocs: dict[str, Any]) -> Any:
    return wd.build_view(JOB, list(allocs))


HEALTHY = (alloc(0), alloc(1), alloc(2))


def doctor(**kw: Any) -> Any:
    return wd.Doctor(**({"load_grace": 60.0, "fail_threshold": 2, "max_backoff": 600.0} | kw))


def test_view_reads_ranks_and_ignores_other_groups_and_old_allocations():
    old = alloc(1, ident="old-1", client="failed") | {"DesiredStatus": "stop"}
    seen = view(alloc(0), old, alloc(1, restarts=2), alloc(2, state="pending"),
                {"ID": "w", "TaskGroup": "watchdog", "DesiredStatus": "run",
                 "ClientStatus": "running", "TaskStates": {}})
    assert [r.rank for r in seen.ranks] == [0, 1, 2]
    assert seen.ranks[1].alloc_id == "alloc-1" and seen.ranks[1].restarts == 2
    assert not seen.complete
    assert seen.problems() == ["rank 2: allocation alloc-2 is running, task(s) rank not running"]
    missing = view(alloc(0), alloc(2))
    assert missing.problems() == ["rank 1: no live allocation"]


def test_a_healthy_ring_is_never_restarted():
    doc = doctor()
    for second in range(0, 3600, 10):
        assert doc.observe(view(*HEALTHY), wd.PROBE_OK, float(second)) is None


def test_a_loading_ring_gets_its_grace_then_is_restarted():
    doc = doctor(load_grace=60.0)
    for second in range(0, 60, 10):  # loading (503) or not answering yet: left alone
        assert doc.observe(view(*HEALTHY), wd.PROBE_LOADING, float(second)) is None
    assert doc.observe(view(*HEALTHY), wd.PROBE_LOADING, 60.0) is None  # 1st failure
    assert doc.observe(view(*HEALTHY), wd.PROBE_FAILED, 70.0) == "one-token probe failed"


def test_a_probe_that_fails_once_is_not_enough():
    doc = doctor()
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0)
    assert doc.observe(view(*HEALTHY), wd.PROBE_FAILED, 10.0) is None
    assert doc.observe(view(*HEALTHY), wd.PROBE_OK, 20.0) is None
    assert doc.observe(view(*HEALTHY), wd.PROBE_FAILED, 30.0) is None
    assert doc.observe(view(*HEALTHY), wd.PROBE_FAILED, 40.0) == "one-token probe failed"


def test_a_dead_rank_restarts_the_ring_without_waiting_for_the_probe():
    doc = doctor()
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0)
    broken = view(alloc(0), alloc(1, state="pending"), alloc(2))
    assert doc.observe(broken, wd.PROBE_SKIPPED, 10.0) is None
    reason = doc.observe(broken, wd.PROBE_SKIPPED, 12.0)
    assert reason == "rank 1: allocation alloc-1 is running, task(s) rank not running"


def test_a_rank_restarted_alone_breaks_the_ring_even_if_it_runs_again():
    doc = doctor()
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0)
    lone = view(alloc(0), alloc(1), alloc(2, restarts=1))
    assert doc.observe(lone, wd.PROBE_FAILED, 10.0) is None  # could be a rolling change
    assert "restarted alone" in doc.observe(lone, wd.PROBE_FAILED, 12.0)


def test_a_lone_restart_the_ring_survived_is_accepted():
    doc = doctor()
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0)
    lone = view(alloc(0, restarts=1), alloc(1, restarts=1), alloc(2))
    assert doc.observe(lone, wd.PROBE_OK, 10.0) is None
    assert doc.notes == ["new ring generation: rank(s) [0, 1] restarted and the ring answers"]
    assert doc.observe(lone, wd.PROBE_OK, 12.0) is None  # the new state is the baseline
    assert doc.notes == []


def test_every_rank_restarted_together_is_a_new_ring_not_a_failure():
    doc = doctor()
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0)
    redeployed = view(*(alloc(r, ident=f"new-{r}") for r in range(3)))
    assert doc.observe(redeployed, wd.PROBE_LOADING, 10.0) is None
    assert any("new ring generation" in n for n in doc.notes)


def test_restarts_that_do_not_heal_back_off_exponentially():
    doc = doctor(load_grace=60.0, max_backoff=200.0, fail_threshold=1)
    dead = view(alloc(0), alloc(1, state="pending"), alloc(2))
    restarts = []
    for second in range(0, 1200, 5):
        if doc.observe(dead, wd.PROBE_SKIPPED, float(second)):
            doc.restarted(float(second))
            restarts.append(second)
    gaps = [b - a for a, b in itertools.pairwise(restarts)]
    assert gaps[:3] == [60, 120, 200] and set(gaps[3:]) == {200}
    # Once the ring answers again, the next failure is acted on at once.
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 1300.0)
    assert doc.observe(dead, wd.PROBE_SKIPPED, 1305.0) is not None


def test_a_rank_whose_node_is_away_is_waited_for_without_backoff_then_healed_on_return():
    """Rank 2's node goes away for 5 minutes (simulated clock, one check every 10 s): Nomad
    marks its allocation lost, the others keep running. The watchdog restarts nothing and its
    backoff does not grow while the node is away; when Nomad places rank 2 again, the whole
    ring is restarted at once (a returning rank cannot join the running ones), and the ring
    answers well within 90 s of the node's return."""
    doc = doctor(load_grace=300.0, max_backoff=900.0)
    assert doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0) is None
    # Before Nomad notices the node is gone, its allocation still reads "running": the probe
    # fails and the ring is restarted once (the restart of rank 2 cannot reach its node).
    reasons, notes, t = [], [], 10.0
    while not reasons:
        reason = doc.observe(view(*HEALTHY), wd.PROBE_FAILED, t)
        notes += doc.notes
        if reason:
            reasons.append(reason)
            doc.restarted(t)
        t += 10.0
    assert doc.restarts_without_heal == 1
    lost = alloc(2, client="lost") | {"DesiredStatus": "stop"}
    away_view = view(alloc(0, restarts=1), alloc(1, restarts=1), lost)
    gone_at, restarts_while_away = t, []
    while t < gone_at + 300.0:
        if doc.observe(away_view, wd.PROBE_SKIPPED, t):
            restarts_while_away.append(t)
        notes += doc.notes
        assert doc.restarts_without_heal == 0 and doc.restart_allowed_at() == 0.0
        t += 10.0
    assert restarts_while_away == []
    assert not any("backoff" in n and "next restart" in n for n in notes), notes
    assert any("waiting for Nomad to place them again" in n for n in notes)
    assert any("backoff of 1 restart(s) dropped" in n for n in notes)
    # The node is back: Nomad places rank 2 (a new allocation). The ring gets the short return
    # grace to form by itself (here it does not), then it is restarted as a whole.
    back_at = t
    returned = view(alloc(0, restarts=1), alloc(1, restarts=1), alloc(2, ident="alloc-2b"))
    restart_at = None
    while restart_at is None:
        if doc.observe(returned, wd.PROBE_FAILED, t):
            restart_at = t
            doc.restarted(t)
        t += 10.0
    assert restart_at - back_at <= 50.0  # the 30 s return grace, then two failed checks
    # Every rank restarted together: a new generation that loads, then answers.
    fresh = view(*(alloc(r, ident=f"gen2-{r}") for r in range(3)))
    assert doc.observe(fresh, wd.PROBE_LOADING, t) is None
    assert doc.observe(fresh, wd.PROBE_OK, t + 10.0) is None
    assert doc.loaded and doc.restarts_without_heal == 0
    assert restart_at + 10.0 - back_at < 90.0


def test_a_rank_away_while_another_waits_for_it_is_still_waited_for():
    """Rank 2's node is away and rank 0's task is not running either (it lost its peer):
    restarting the ring cannot help while rank 2 has nowhere to run, so nothing is restarted."""
    doc = doctor(fail_threshold=1)
    doc.observe(view(*HEALTHY), wd.PROBE_OK, 0.0)
    lost = alloc(2, client="lost") | {"DesiredStatus": "stop"}
    both = view(alloc(0, state="pending", restarts=3), alloc(1), lost)
    for second in range(10, 400, 10):
        assert doc.observe(both, wd.PROBE_SKIPPED, float(second)) is None
    assert doc.restarts_without_heal == 0


def test_bad_arguments_are_refused(tmp_path: Path):
    result = subprocess.run([sys.executable, str(WATCHDOG), "--interval", "0",
                             "--nomad-addr", "127.0.0.1:4646"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--interval must be > 0" in result.stderr
    assert "--nomad-addr must start with http(s)://" in result.stderr


@pytest.fixture
def fake_api(tmp_path: Path):
    job = evaluate_job(JOB_FILE, load_var_file(JOB_FILE.parent / "ring.vars.example.hcl"))
    client = NomadClientDouble(job, {}, tmp_path, variables={}, groups=[])
    fake = FakeNomad(client, token="right-token-0123456789")
    thread = threading.Thread(target=fake.serve, daemon=True)
    thread.start()
    assert fake.ready.wait(10)
    yield fake
    fake.shutdown()


def test_a_refused_token_is_reported_without_being_logged(fake_api: FakeNomad):
    wrong = "wrong-token-9876543210"
    result = subprocess.run(
        [sys.executable, str(WATCHDOG), "--once", "--nomad-addr", fake_api.address,
         "--job", "primacpp"], env={"NOMAD_TOKEN": wrong, "PRIMACPP_WATCHDOG_LOG": "DEBUG"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "cannot read the job from Nomad: URLNotAuthorizedNomadException (HTTP 403)" in (
        result.stderr)
    assert wrong not in result.stderr + result.stdout
    assert fake_api.refused == [("GET", "/v1/job/primacpp", 403)]


def test_with_the_right_token_it_reads_only_what_its_policy_allows(fake_api: FakeNomad):
    result = subprocess.run(
        [sys.executable, str(WATCHDOG), "--once", "--nomad-addr", fake_api.address,
         "--job", "primacpp"], env={"NOMAD_TOKEN": fake_api.token},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # No allocation at all: every rank is waited for (no node to run them), nothing restarted.
    assert "rank(s) [0, 1, 2] have no live allocation (node away?)" in result.stderr
    assert fake_api.calls == [("GET", "/v1/job/primacpp"), ("GET", "/v1/job/primacpp/allocations")]
    assert fake_api.refused == [] and fake_api.restarts == []
