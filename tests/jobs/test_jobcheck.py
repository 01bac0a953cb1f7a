"""The job check passes on the project's jobs and catches one planted mistake per rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobcheck.check import check_paths
from jobcheck.jobmodel import JobFileError, evaluate_job

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
RING = "primacpp.nomad.hcl"
APP = "pipecatapp.nomad.hcl"
EXAMPLE_VARS = JOBS / "ring.vars.example.hcl"
VAR_FILES = {"primacpp": EXAMPLE_VARS}


def test_project_jobs_pass_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "jobcheck.check", "jobs/", "--var-file",
                             f"primacpp={EXAMPLE_VARS}", "--pins"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobcheck: ok: pipecatapp (1 groups), primacpp (4 groups)" in result.stdout
    assert ('{"job": "primacpp", "pins": {"rank-0": "node1", "rank-1": "node2", '
            '"rank-2": "node3", "watchdog": "node1"}}') in result.stdout


def test_ring_job_without_variables_refuses_and_says_where_the_rendered_file_is():
    """No default points at nodes that do not exist: without the playbook's file the ring job
    does not evaluate, and the message names the file and the command."""
    with pytest.raises(JobFileError,
                       match=r"No ranks given.*ring\.vars\.hcl next to your inventory"):
        evaluate_job(JOBS / RING)
    result = subprocess.run([sys.executable, "-m", "jobcheck.check", "jobs/"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "nomad job run -var-file=<inventory dir>/ring.vars.hcl" in result.stdout


def test_a_var_file_for_a_job_that_is_not_checked_is_reported(tmp_path: Path):
    _, findings = check_paths([JOBS / APP], var_files={"primacpp": EXAMPLE_VARS})
    parse = [f for f in findings if f.rule == "parse"]
    assert len(parse) == 1 and "not among the checked jobs" in parse[0].message


def test_ring_job_has_one_pinned_group_per_rank():
    ranks = [{"node": f"host-{i}", "layers": 8, "gpu_layers": 0, "uid": 990 + i, "gid": 980 + i,
              "memory_mb": 300 + i} for i in range(4)]
    job = evaluate_job(JOBS / RING, {"ranks": ranks})
    groups = {g.name: g for g in job.groups()}
    assert sorted(groups) == ["rank-0", "rank-1", "rank-2", "rank-3", "watchdog"]
    for i in range(4):
        group = groups[f"rank-{i}"]
        assert group.attrs["count"] == 1
        pin = group.child("constraint")
        assert pin is not None
        assert (pin.attrs["attribute"], pin.attrs["value"]) == ("${node.unique.name}", f"host-{i}")
        ports = {p.name: p.attrs["static"] for p in group.child("network").children("port")}
        assert ports["data"] == 9000 + i and ports["signal"] == 10000 + i
        names = [s.attrs["name"] for s in group.children("service")]
        assert names == (["primacpp-rank-0", "primacpp-api"] if i == 0 else [f"primacpp-rank-{i}"])
        task = group.child("task")
        assert task.attrs["driver"] == "raw_exec" and task.attrs["kill_signal"] == "SIGINT"
        data = task.child("template").attrs["data"]
        assert f"PRIMACPP_RANK={i}\n" in data and "PRIMACPP_LAYER_WINDOW=8,8,8,8\n" in data
        assert f'nomadService "primacpp-rank-{(i + 1) % 4}"' in data
        assert task.child("resources").attrs["memory"] == 300 + i  # the rank's own limit
        # Unprivileged: the engine runs as the primacpp user, which owns its secrets file.
        assert task.attrs["user"] == "primacpp"
        secret = next(t for t in task.children("template")
                      if t.attrs["destination"] == "secrets/api-key")
        assert (secret.attrs["uid"], secret.attrs["gid"], secret.attrs["perms"]) == (
            990 + i, 980 + i, "0400")
    watchdog = groups["watchdog"]
    pin = watchdog.child("constraint")
    assert (pin.attrs["attribute"], pin.attrs["value"]) == ("${node.unique.name}", "host-0")
    task = watchdog.child("task")
    secret = task.child("template")
    assert task.attrs["user"] == "primacpp"
    assert (secret.attrs["uid"], secret.attrs["gid"]) == (990, 980)


def test_bad_variables_are_refused_with_their_message():
    with pytest.raises(JobFileError, match=r'engine.*must be "primacpp" or "rpc"'):
        evaluate_job(JOBS / RING, {"engine": "vllm"})
    with pytest.raises(JobFileError, match="between 2 and 32 ranks"):
        evaluate_job(JOBS / RING, {"ranks": [{"node": "a", "layers": 30, "gpu_layers": 0,
                                              "uid": 1, "gid": 1, "memory_mb": 512}]})


def _planted(tmp_path: Path, file: str, old: str, new: str) -> Path:
    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs)
    path = jobs / file
    text = path.read_text()
    assert old in text, f"the mutation's anchor {old!r} is not in {file}"
    path.write_text(text.replace(old, new, 1))
    return jobs


MISTAKES = [
    pytest.param("parse", APP, "job \"pipecatapp\" {", "job \"pipecatapp\" {{", id="parse"),
    pytest.param("variables-typed", RING,
                 'description = "Datacenters the ring may run in."', "", id="variables-typed"),
    pytest.param("service-provider", APP, 'type     = "tcp"', 'type     = "script"',
                 id="service-provider"),
    pytest.param("service-port", RING, 'port     = "data"', 'port     = "dta"',
                 id="service-port"),
    pytest.param("template-env-signal", APP, 'change_mode = "restart"\n        data        = <<EOT',
                 'change_mode = "signal"\n        data        = <<EOT', id="template-env-signal"),
    pytest.param("distinct-hosts-level", APP, 'driver      = "exec"',
                 'driver      = "exec"\n      constraint {\n        operator = "distinct_hosts"\n'
                 '        value    = "true"\n      }', id="distinct-hosts-level"),
    pytest.param("no-alloc-index", RING, "PRIMACPP_RANK=${group.key}",
                 'PRIMACPP_RANK={{ env "NOMAD_ALLOC_INDEX" }}', id="no-alloc-index"),
    pytest.param("secrets-dir", APP, 'destination = "secrets/llm.env"',
                 'destination = "local/llm.env"', id="secrets-dir"),
    pytest.param("service-reference", APP, 'default     = "primacpp-api"',
                 'default     = "primacpp-apl"', id="service-reference"),
    pytest.param("launcher-settings", RING, "PRIMACPP_THREADS=${var.threads}\n",
                 "PRIMACPP_THREAD=${var.threads}\n", id="launcher-settings"),
]


@pytest.mark.parametrize(("rule", "file", "old", "new"), MISTAKES)
def test_planted_mistake_is_caught(tmp_path: Path, rule: str, file: str, old: str, new: str):
    jobs = _planted(tmp_path, file, old, new)
    _, findings = check_paths([jobs], var_files=VAR_FILES)
    rules = {f.rule for f in findings}
    assert rule in rules, f"{rule} not reported; got {[str(f) for f in findings]}"
    assert rules == {rule}, f"unrelated findings: {[str(f) for f in findings]}"
    result = subprocess.run([sys.executable, "-m", "jobcheck.check", str(jobs), "--var-file",
                             f"primacpp={EXAMPLE_VARS}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"[{rule}]" in result.stdout


def test_launcher_settings_missing_in_the_job_is_named(tmp_path: Path):
    jobs = _planted(tmp_path, RING, "PRIMACPP_CTX_SIZE=${var.ctx_size}\n", "")
    _, findings = check_paths([jobs], var_files=VAR_FILES)
    assert [f.message for f in findings] == [
        "the launcher reads PRIMACPP_CTX_SIZE, which the job does not render"] * 3
