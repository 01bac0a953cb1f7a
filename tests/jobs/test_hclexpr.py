"""The HCL evaluator behind the job check: the expressions and templates the jobs use, and a
clear error for anything it does not support."""

from __future__ import annotations

import pytest

from jobcheck.hclexpr import HclEvalError, evaluate, render_string

RANKS = [{"node": "a", "layers": 10}, {"node": "b", "layers": 12}, {"node": "c", "layers": 8}]
SCOPE = {"var": {"ranks": RANKS, "engine": "rpc", "port": 9000}, "group": {"key": 2}}


@pytest.mark.parametrize(("expr", "value"), [
    ("var.port + group.key", 9002),
    ("(group.key + 1) % length(var.ranks)", 0),
    ('join(",", [for r in var.ranks : r.layers])', "10,12,8"),
    ("[for i, r in var.ranks : r.node if i > 0]", ["b", "c"]),
    ('var.engine == "rpc" && group.key > 0 ? ["rpc"] : []', ["rpc"]),
    ('contains(["primacpp", "rpc"], var.engine)', True),
    ("length([for r in var.ranks : r if r.layers < 1]) == 0", True),
    ("var.ranks[1].node", "b"),
    ('{ api = var.port, "x" = 1 }', {"api": 9000, "x": 1}),
    ("!true || -1 < 0", True),
])
def test_expressions(expr: str, value: object):
    assert evaluate(expr, SCOPE) == value


def test_templates_with_directives_strip_markers_and_escapes():
    text = ("IPS=%{ for i, r in var.ranks }%{ if i > 0 },%{ endif }${r.node}%{ endfor }\n"
            "%{ for r in var.ranks ~}\nL=${r.layers}\n%{ endfor ~}\n"
            "LIT=$${NOMAD_TASK_DIR} %%{ not a directive }")
    assert render_string(text, SCOPE) == (
        "IPS=a,b,c\nL=10\nL=12\nL=8\nLIT=${NOMAD_TASK_DIR} %{ not a directive }")


def test_a_single_interpolation_keeps_its_type_and_runtime_references_stay():
    assert render_string("${var.port}", SCOPE) == 9000
    assert render_string("${node.unique.name}", SCOPE) == "${node.unique.name}"
    assert render_string("${NOMAD_SECRETS_DIR}/api-key", SCOPE) == "${NOMAD_SECRETS_DIR}/api-key"


@pytest.mark.parametrize(("expr", "says"), [
    ("var.missing", "no attribute 'missing'"),
    ("unknown.thing", "unknown name 'unknown'"),
    ("templatefile(\"x\", {})", "templatefile() is not supported"),
    ("var.port +", "unexpected"),
])
def test_unsupported_or_wrong_expressions_are_reported(expr: str, says: str):
    with pytest.raises(HclEvalError, match=says.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expr, SCOPE)
