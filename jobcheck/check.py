"""Check the project's Nomad jobs without Nomad:
``python -m jobcheck.check jobs/ --var-file primacpp=ring.vars.hcl`` (the ring job needs the
variables file the playbook renders; ``jobs/ring.vars.example.hcl`` is the example inventory's).

Every ``*.nomad.hcl`` file must parse (python-hcl2) and evaluate with its defaults
(:mod:`jobcheck.jobmodel`), then pass a short list of rules. Each rule is traceable to Nomad's
documentation (or says it is a project rule), because hand-written rules drift from Nomad:
keep them few. ``nomad job validate`` on a real cluster remains the authority
(scripts/acceptance.sh runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from jobcheck.jobmodel import Block, Job, JobFileError, evaluate_job, load_var_file, parse_file
from jobcheck.scripts import LAUNCHER, load_script

LAUNCHER_NAME = "primacpp-ring-launch"
DEFAULT_LAUNCHER = LAUNCHER
_SERVICE_USE = re.compile(r'nomadService\s+"([^"]+)"')
_RENDERED_KEY = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.M)


@dataclass(frozen=True)
class Finding:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.rule}] {self.message}"


def _tasks(job: Job) -> Iterable[tuple[Block, Block]]:
    for group in job.groups():
        for task in group.children("task"):
            yield group, task


# -- rules on one job --------------------------------------------------------------------------

def rule_variables_typed(job: Job) -> list[Finding]:
    """Every input variable has a ``type`` and a ``description``.

    https://developer.hashicorp.com/nomad/docs/job-specification/hcl2/variables
    (the type constrains what ``-var`` accepts; the description is how nomad-pack
    and operators learn what a variable means).
    """
    out = []
    for var in job.source.children("variable"):
        for attr in ("type", "description"):
            if not str(var.attrs.get(attr, "")).strip():
                out.append(Finding("variables-typed", f"{job.path}: variable {var.name}",
                                   f"has no {attr}"))
    return out


def rule_service_provider(job: Job) -> list[Finding]:
    """One service provider per group, and checks of Nomad-provider services are http or tcp.

    https://developer.hashicorp.com/nomad/docs/job-specification/service#provider
    ("...all services within a single task group must use the same provider") and
    https://developer.hashicorp.com/nomad/docs/job-specification/check (Nomad native service
    discovery supports only ``http`` and ``tcp`` checks).
    """
    out = []
    for group in job.groups():
        services = [b for _, b in group.walk() if b.type == "service"]
        providers = {str(s.attrs.get("provider", "consul")) for s in services}
        if len(providers) > 1:
            out.append(Finding("service-provider", f"{job.path}: group {group.name}",
                               f"mixes service providers {sorted(providers)}"))
        for service in services:
            if service.attrs.get("provider", "consul") != "nomad":
                continue
            for check in service.children("check"):
                kind = check.attrs.get("type")
                if kind not in ("http", "tcp"):
                    out.append(Finding(
                        "service-provider", f"{job.path}: service {service.attrs.get('name')}",
                        f"check type {kind!r} is not supported by Nomad service discovery "
                        "(http or tcp)"))
    return out


def rule_service_port(job: Job) -> list[Finding]:
    """A service's ``port`` names a port label of its group's network block.

    https://developer.hashicorp.com/nomad/docs/job-specification/service#port
    """
    out = []
    for group in job.groups():
        network = group.child("network")
        labels = {p.name for p in network.children("port")} if network else set()
        for _, service in ((p, b) for p, b in group.walk() if b.type == "service"):
            port = service.attrs.get("port")
            if port is not None and not str(port).isdigit() and str(port) not in labels:
                out.append(Finding("service-port", f"{job.path}: group {group.name}",
                                   f"service {service.attrs.get('name')} uses port {port!r}, "
                                   f"not one of the group's ports {sorted(labels)}"))
    return out


def rule_template_env_signal(job: Job) -> list[Finding]:
    """A template with ``env = true`` cannot use ``change_mode = "signal"``.

    https://developer.hashicorp.com/nomad/docs/job-specification/template#env
    """
    return [
        Finding("template-env-signal", f"{job.path}: task {task.name}",
                f"template {tpl.attrs.get('destination')} has env = true with change_mode "
                '"signal"; environment changes need "restart"')
        for _, task in _tasks(job)
        for tpl in task.children("template")
        if tpl.attrs.get("env") is True and tpl.attrs.get("change_mode") == "signal"
    ]


def rule_distinct_hosts_level(job: Job) -> list[Finding]:
    """``distinct_hosts`` constraints belong at job or group level, never in a task.

    https://developer.hashicorp.com/nomad/docs/job-specification/constraint#distinct_hosts
    """
    out = []
    for parents, block in job.body.walk():
        if block.type != "constraint" or block.attrs.get("operator") != "distinct_hosts":
            continue
        if any(p.type == "task" for p in parents):
            out.append(Finding("distinct-hosts-level", f"{job.path}: {parents[-1].name}",
                               "distinct_hosts is only allowed at job or group level"))
    return out


def rule_no_alloc_index(job: Job) -> list[Finding]:
    """Nothing may derive identity (ring ranks) from ``NOMAD_ALLOC_INDEX``.

    https://developer.hashicorp.com/nomad/docs/runtime/environment: the index "is unique
    within a given version of a job, but canaries or failed tasks in a deployment may reuse
    the index". Project rule: one group per rank, generated from the rank list.
    """
    out = []
    for parents, block in job.body.walk():
        for name, value in block.attrs.items():
            if "NOMAD_ALLOC_INDEX" in repr(value) or "alloc.index" in repr(value):
                where = "/".join(p.name or p.type for p in [*parents[1:], block])
                out.append(Finding("no-alloc-index", f"{job.path}: {where}.{name}",
                                   "uses NOMAD_ALLOC_INDEX, which is not unique: generate "
                                   "one group per rank instead"))
    return out


def rule_secrets_in_secrets_dir(job: Job) -> list[Finding]:
    """Templates that read Nomad Variables render into ``secrets/`` (or the environment).

    https://developer.hashicorp.com/nomad/docs/runtime/environment#task-directories:
    ``secrets/`` is private to the task and not browsable with ``nomad alloc fs``.
    Project rule: no secret is written in a job file, so one comes only from nomadVar.
    """
    out = []
    for _, task in _tasks(job):
        for tpl in task.children("template"):
            data = str(tpl.attrs.get("data", ""))
            dest = str(tpl.attrs.get("destination", ""))
            if "nomadVar" in data and not dest.startswith(("secrets/", "${NOMAD_SECRETS_DIR}")):
                out.append(Finding("secrets-dir", f"{job.path}: task {task.name}",
                                   f"template reading nomadVar renders to {dest!r}, "
                                   "outside secrets/"))
    return out


JOB_RULES: list[Callable[[Job], list[Finding]]] = [
    rule_variables_typed,
    rule_service_provider,
    rule_service_port,
    rule_template_env_signal,
    rule_distinct_hosts_level,
    rule_no_alloc_index,
    rule_secrets_in_secrets_dir,
]


# -- cross-references between jobs and the launcher -----------------------------------------

def check_service_references(jobs: list[Job]) -> list[Finding]:
    """Every ``nomadService "NAME"`` a template reads is registered by some job's Nomad
    service (project cross-reference; a typo renders an empty address for ever)."""
    registered = {
        str(block.attrs.get("name"))
        for job in jobs for _, block in job.body.walk()
        if block.type == "service" and block.attrs.get("provider") == "nomad"
    }
    out = []
    for job in jobs:
        for _, task in _tasks(job):
            for tpl in task.children("template"):
                for name in _SERVICE_USE.findall(str(tpl.attrs.get("data", ""))):
                    if name not in registered:
                        out.append(Finding("service-reference", f"{job.path}: task {task.name}",
                                           f'nomadService "{name}" is registered by no job'))
    return out


def launcher_settings(path: Path) -> list[str]:
    """The setting names the launcher reads (its SETTING_NAMES), loaded from its file."""
    return list(load_script(path, f"_jobcheck_launcher_{abs(hash(str(path)))}").SETTING_NAMES)


def check_launcher_settings(jobs: list[Job], launcher: Path) -> list[Finding]:
    """Every setting the launcher reads is rendered for it by the job, and the job renders no
    PRIMACPP_* name the launcher does not know (project cross-reference)."""
    wanted = set(launcher_settings(launcher))
    out = []
    for job in jobs:
        for group, task in _tasks(job):
            config = task.child("config")
            command = str(config.attrs.get("command", "")) if config else ""
            if Path(command).name != LAUNCHER_NAME:
                continue
            rendered = set()
            for tpl in task.children("template"):
                rendered |= set(_RENDERED_KEY.findall(str(tpl.attrs.get("data", ""))))
            env = task.child("env")
            rendered |= set(env.attrs) if env else set()
            where = f"{job.path}: group {group.name}"
            for name in sorted(wanted - rendered):
                out.append(Finding("launcher-settings", where,
                                   f"the launcher reads {name}, which the job does not render"))
            for name in sorted(n for n in rendered - wanted if n.startswith("PRIMACPP_")):
                out.append(Finding("launcher-settings", where,
                                   f"the job renders {name}, which the launcher does not read"))
    return out


def check_paths(
    paths: list[Path],
    launcher: Path = DEFAULT_LAUNCHER,
    var_files: Mapping[str, Path] | None = None,
) -> tuple[list[Job], list[Finding]]:
    """Check every job file under ``paths``; ``var_files`` maps a job file's name without
    ``.nomad.hcl`` (e.g. ``primacpp``) to the ``-var-file`` it is evaluated with."""
    var_files = dict(var_files or {})
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.nomad.hcl")) if path.is_dir() else [path]
    findings: list[Finding] = []
    jobs: list[Job] = []
    if not files:
        findings.append(Finding("parse", ", ".join(map(str, paths)), "no *.nomad.hcl files"))
    stems = {f.name.removesuffix(".nomad.hcl") for f in files}
    for stem in sorted(set(var_files) - stems):
        findings.append(Finding("parse", str(var_files[stem]),
                                f"--var-file for {stem!r}, which is not among the checked jobs"))
    for file in files:
        stem = file.name.removesuffix(".nomad.hcl")
        try:
            parse_file(file)
            overrides = load_var_file(var_files[stem]) if stem in var_files else None
            jobs.append(evaluate_job(file, overrides))
        except JobFileError as exc:
            findings.append(Finding("parse", str(file), str(exc)))
    for job in jobs:
        for rule in JOB_RULES:
            findings += rule(job)
    findings += check_service_references(jobs)
    findings += check_launcher_settings(jobs, launcher)
    return jobs, findings


def pins(job: Job) -> dict[str, str]:
    """Each group's ``${node.unique.name}`` constraint value (the node a rank is pinned to)."""
    out = {}
    for group in job.groups():
        for constraint in group.children("constraint"):
            if constraint.attrs.get("attribute") == "${node.unique.name}":
                out[group.name] = str(constraint.attrs.get("value"))
    return out


def _var_file_arg(text: str) -> tuple[str, Path]:
    job, sep, path = text.partition("=")
    if not sep or not job or not path:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected JOB=PATH, e.g. primacpp=ring.vars.hcl")
    return job, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobcheck.check", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="job files or directories")
    parser.add_argument("--launcher", type=Path, default=DEFAULT_LAUNCHER,
                        help="the ring launcher whose settings the jobs must render")
    parser.add_argument("--var-file", dest="var_files", action="append", default=[],
                        type=_var_file_arg, metavar="JOB=PATH",
                        help="evaluate JOB.nomad.hcl with this -var-file (e.g. the ring.vars.hcl "
                             "the playbook renders): primacpp=inventory-dir/ring.vars.hcl")
    parser.add_argument("--pins", action="store_true",
                        help="print one JSON line per job: its groups' pinned node names")
    opts = parser.parse_args(argv)
    jobs, findings = check_paths(opts.paths, opts.launcher, dict(opts.var_files))
    if opts.pins:
        for job in jobs:
            print(json.dumps({"job": job.name, "pins": pins(job)}, sort_keys=True))
    for finding in findings:
        print(finding)
    names = ", ".join(f"{j.name} ({len(j.groups())} groups)" for j in jobs)
    if findings:
        print(f"jobcheck: {len(findings)} problem(s) in {names or 'no jobs'}", file=sys.stderr)
        return 1
    print(f"jobcheck: ok: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
