"""jobs/pipecatapp.nomad.hcl gives the app exactly the settings it reads: the LLM URL from the
ring's primacpp-api registration and the API key from Nomad Variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobcheck.jobmodel import JobFileError, evaluate_job
from pipecatapp.config import FOREIGN_ENV, env_name, load_config, setting_names

from .client_double import TemplateError, render_client_template

JOB = Path(__file__).resolve().parents[2] / "jobs" / "pipecatapp.nomad.hcl"


def _task():
    job = evaluate_job(JOB)
    (group,) = job.groups()
    return job, group, group.child("task")


def test_the_app_runs_under_exec_on_the_audio_node_with_a_restart_policy_and_a_check():
    _, group, task = _task()
    assert task.attrs["driver"] == "exec"
    constraint = group.child("constraint")
    assert (constraint.attrs["attribute"], constraint.attrs["value"]) == ("${meta.audio}", "true")
    assert group.child("restart").attrs["mode"] == "delay"
    (service,) = group.children("service")
    assert service.attrs["provider"] == "nomad"
    assert service.child("check").attrs["type"] == "tcp"
    args = task.child("config").attrs["args"]
    # "${var.webrtc_port}" is a number in HCL; Nomad turns it into the string argument.
    assert args[:2] == ["-m", "pipecatapp"] and str(args[args.index("--port") + 1]) == "7860"


def test_rendered_environment_is_what_the_app_reads():
    job, _, task = _task()
    (template,) = task.children("template")
    assert template.attrs["env"] is True and template.attrs["destination"].startswith("secrets/")
    rendered = render_client_template(
        str(template.attrs["data"]),
        services={"primacpp-api": [("10.20.0.10", 8080)]}, env={},
        variables={str(job.variables["api_key_var"]): {"api_key": "k-123456"}})
    env = dict(line.split("=", 1) for line in rendered.splitlines())
    env |= {k: str(v) for k, v in task.child("env").attrs.items()}
    # the settings' own variables, Nomad's, and the cache root (pipecatapp.embedded.models)
    known = (set(FOREIGN_ENV) | {env_name(n) for n in setting_names()}
             | {"PIPECATAPP_CACHE_DIR"})
    assert set(env) <= known, f"the app does not read {sorted(set(env) - known)}"
    cfg = load_config(environ=env)
    # the page is served over HTTPS by default, so phones on the LAN get the microphone
    assert cfg.webrtc.https is True
    assert env["PIPECATAPP_CACHE_DIR"].startswith("${NOMAD_ALLOC_DIR}/")
    assert cfg.llm.url == "http://10.20.0.10:8080/v1"
    assert cfg.llm.api_key.get_secret_value() == "k-123456"
    assert cfg.llm.service == "primacpp-api"
    assert cfg.llm.nomad_addr == "http://127.0.0.1:4646"


def test_no_ring_yet_renders_an_empty_url_so_the_app_asks_nomad():
    job, _, task = _task()
    (template,) = task.children("template")
    rendered = render_client_template(
        str(template.attrs["data"]), services={}, env={},
        variables={str(job.variables["api_key_var"]): {"api_key": "k"}})
    assert "PIPECATAPP_LLM_URL=\n" in rendered + "\n"
    with pytest.raises(TemplateError, match="does not exist"):
        render_client_template(str(template.attrs["data"]), services={}, env={}, variables={})


def test_the_local_transport_is_refused_with_a_pointer_to_the_browser_client():
    """Under Nomad the exec driver's chroot has no /dev/snd: the job refuses transport
    "local" when it is evaluated (as `nomad job run -var transport=local` would) and says to
    use the browser client; the job checker reports the same."""
    with pytest.raises(JobFileError, match=r'transport = "local" cannot work under Nomad.*'
                                           r'/dev/snd.*browser client.*webrtc'):
        evaluate_job(JOB, {"transport": "local"})
    assert evaluate_job(JOB).variables["transport"] == "webrtc"
