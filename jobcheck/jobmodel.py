"""Read a Nomad job file into plain blocks and evaluate its HCL layer like ``nomad job run``.

Nomad handles a job file in two stages: the HCL2 layer (variables, locals, ``${...}``,
``dynamic`` blocks) is evaluated when the job is submitted; the Consul-template text in
``template`` blocks (``{{ ... }}``) is rendered later on the client. This module does the
first stage with python-hcl2 and :mod:`jobcheck.hclexpr`, so the job check and the tests look
at the same groups, services and template text Nomad would (docs:
https://developer.hashicorp.com/nomad/docs/job-specification/hcl2/variables and
https://developer.hashicorp.com/nomad/docs/job-specification/hcl2/expressions).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

from jobcheck.hclexpr import HclEvalError, render_string

_OPTIONS = SerializationOptions(
    strip_string_quotes=True, preserve_heredocs=False, explicit_blocks=True
)
_MARK = "__is_block__"


class JobFileError(ValueError):
    """A job file cannot be parsed or evaluated; the message names the file and the cause."""


@dataclass
class Block:
    """One HCL block: its type, labels, attributes and nested blocks (in file order)."""

    type: str
    labels: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def children(self, block_type: str) -> list[Block]:
        return [b for b in self.blocks if b.type == block_type]

    def child(self, block_type: str) -> Block | None:
        found = self.children(block_type)
        return found[0] if found else None

    @property
    def name(self) -> str:
        return self.labels[0] if self.labels else ""

    def walk(self) -> Iterator[tuple[list[Block], Block]]:
        """Every nested block with the chain of its ancestors (outermost first)."""
        stack: list[tuple[list[Block], Block]] = [([], self)]
        while stack:
            parents, block = stack.pop(0)
            yield parents, block
            stack[0:0] = [([*parents, block], child) for child in block.blocks]


def _is_block(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_MARK) is True


def _to_block(block_type: str, raw: dict[str, Any], labels: list[str]) -> Block:
    if _is_block(raw):
        block = Block(block_type, labels)
        for key, value in raw.items():
            if key in (_MARK, "__comments__", "__inline_comments__"):
                continue
            if isinstance(value, list) and value and all(
                isinstance(v, dict) and (_is_block(v) or _is_labelled(v)) for v in value
            ):
                for item in value:
                    block.blocks.append(_to_block(key, item, []))
            else:
                block.attrs[key] = value
        return block
    if _is_labelled(raw):
        ((label, inner),) = raw.items()
        return _to_block(block_type, inner, [*labels, label])
    raise JobFileError(f"unexpected structure in block {block_type!r}: {list(raw)[:5]}")


def _is_labelled(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (inner,) = value.values()
    return _is_block(inner) or _is_labelled(inner)


def parse_file(path: Path) -> Block:
    """Parse ``path`` with python-hcl2 into a root :class:`Block` (type ``"file"``)."""
    try:
        with path.open(encoding="utf-8") as handle:
            raw = hcl2.load(handle, serialization_options=_OPTIONS)
    except Exception as exc:  # python-hcl2 raises lark errors of many kinds
        raise JobFileError(f"{path}: does not parse as HCL2: {exc}") from exc
    return _to_block("file", {**raw, _MARK: True}, [])


def load_var_file(path: Path) -> dict[str, Any]:
    """Read a ``-var-file`` (HCL attributes only, literal values) into a dict of overrides."""
    try:
        with path.open(encoding="utf-8") as handle:
            raw = hcl2.load(handle, serialization_options=_OPTIONS)
    except OSError as exc:
        raise JobFileError(f"{path}: cannot read the variables file: {exc}") from exc
    except Exception as exc:  # python-hcl2 raises lark errors of many kinds
        raise JobFileError(f"{path}: does not parse as HCL2: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("__"):
            continue
        if _is_block(value) or (isinstance(value, list) and any(_is_block(v) for v in value)):
            raise JobFileError(f"{path}: {key} is a block; a variables file holds only attributes")
        values[key] = _render(value, {})
    return values


# -- evaluation ------------------------------------------------------------------------------

def _render(value: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, list):
        return [_render(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, scope) for k, v in value.items() if k != _MARK}
    return value


def variable_values(root: Block, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of every ``variable`` block, replaced by ``overrides`` (like ``-var``), then
    each ``validation`` block checked (its ``error_message`` is raised when it fails)."""
    overrides = dict(overrides or {})
    declared = {b.name: b for b in root.children("variable")}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise JobFileError(f"no variable named {', '.join(unknown)} is declared in the job")
    values: dict[str, Any] = {}
    for name, block in declared.items():
        if name in overrides:
            values[name] = overrides[name]
        elif "default" in block.attrs:
            values[name] = _render(block.attrs["default"], {})
        else:
            raise JobFileError(f"variable {name!r} has no default and was not given")
    for name, block in declared.items():
        for validation in block.children("validation"):
            scope = {"var": values}
            try:
                ok = _render(validation.attrs.get("condition", True), scope)
            except HclEvalError as exc:
                raise JobFileError(f"variable {name!r}: cannot evaluate validation: {exc}") from exc
            if not ok:
                message = validation.attrs.get("error_message", "invalid value")
                raise JobFileError(f"variable {name!r}: {message}")
    return values


def _eval_block(block: Block, scope: Mapping[str, Any]) -> Block:
    out = Block(block.type, [str(_render(lbl, scope)) for lbl in block.labels])
    out.attrs = {k: _render(v, scope) for k, v in block.attrs.items()}
    for child in block.blocks:
        if child.type == "dynamic":
            out.blocks.extend(_expand_dynamic(child, scope))
        else:
            out.blocks.append(_eval_block(child, scope))
    return out


def _expand_dynamic(dyn: Block, scope: Mapping[str, Any]) -> list[Block]:
    """``dynamic "X" { for_each, labels, iterator, content {} }`` -> X blocks."""
    block_type = dyn.name
    iterator = str(dyn.attrs.get("iterator", block_type))
    collection = _render(dyn.attrs.get("for_each", []), scope)
    content = dyn.child("content")
    if content is None:
        raise JobFileError(f"dynamic {block_type!r} has no content block")
    if isinstance(collection, list):
        items = list(enumerate(collection))
    elif isinstance(collection, dict):
        items = list(collection.items())
    else:
        raise JobFileError(f"dynamic {block_type!r}: for_each is not a collection")
    expanded: list[Block] = []
    for key, value in items:
        inner_scope = {**scope, iterator: {"key": key, "value": value}}
        labels = [str(_render(lbl, inner_scope)) for lbl in dyn.attrs.get("labels", [])]
        body = _eval_block(Block(block_type, [], content.attrs, content.blocks), inner_scope)
        body.labels = labels
        expanded.append(body)
    return expanded


@dataclass
class Job:
    """A job after the HCL layer: its name, evaluated body, the variables used."""

    path: Path
    name: str
    body: Block
    variables: dict[str, Any]
    source: Block

    def groups(self) -> list[Block]:
        return self.body.children("group")


def evaluate_job(path: Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """Parse ``path`` and evaluate variables, locals and dynamic blocks."""
    root = parse_file(path)
    jobs = root.children("job")
    if len(jobs) != 1:
        raise JobFileError(f"{path}: expected exactly one job block, found {len(jobs)}")
    try:
        values = variable_values(root, overrides)
        scope: dict[str, Any] = {"var": values, "local": {}}
        for locals_block in root.children("locals"):
            for key, value in locals_block.attrs.items():
                scope["local"] = {**scope["local"], key: _render(value, scope)}
        body = _eval_block(jobs[0], scope)
    except HclEvalError as exc:
        raise JobFileError(f"{path}: {exc}") from exc
    return Job(path=path, name=body.name, body=body, variables=values, source=root)
