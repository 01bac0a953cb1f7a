"""Generate each Ansible role's variable table from its ``meta/argument_specs.yml``.

The argument specs are the one home of a role variable's type, default and meaning; the table
in ``roles/<role>/README.md`` between the two marker lines below is generated from them:

    python -m devtools.roledoc            # rewrite the tables
    python -m devtools.roledoc --check    # exit 1 and name the roles whose table is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from devtools.markers import replace_between

BEGIN = (
    "<!-- BEGIN ROLE VARIABLES: generated from meta/argument_specs.yml by "
    "`python -m devtools.roledoc`; do not edit by hand -->"
)
END = "<!-- END ROLE VARIABLES -->"
REGENERATE = "python -m devtools.roledoc"
ROOT = Path(__file__).resolve().parent.parent
JINJA = re.compile(r"[^\s(]*\{\{.*?\}\}[^\s)]*")


class RoleDocError(Exception):
    """A role's specs or README cannot be used; the message names the file."""


def _inline(value: Any) -> str:
    """A default as one line of YAML flow style (``[a, b]``, ``{}``, ``true``, ``""``)."""
    if value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _as_code(match: re.Match[str]) -> str:
    """A Jinja expression (with the path around it) as code; sentence punctuation after it
    stays outside."""
    text = match.group(0)
    ends_sentence = text[-1] in ",;:" or (text[-1] == "." and text[-2] not in "./")
    body, tail = (text[:-1], text[-1]) if ends_sentence else (text, "")
    return f"`{body}`{tail}"


def _cell(text: str) -> str:
    """One table cell: one line, ``|`` escaped; outside code spans ``<``/``>`` escaped and
    Jinja expressions shown as code."""
    pieces = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(pieces), 2):  # even pieces lie outside backticks
        plain = pieces[i].replace("<", "&lt;").replace(">", "&gt;")
        pieces[i] = JINJA.sub(_as_code, plain)
    return "`".join(pieces)


def _description(spec: Mapping[str, Any]) -> str:
    desc = spec.get("description", "")
    if isinstance(desc, list):
        desc = " ".join(str(d) for d in desc)
    parts = [str(desc).strip()]
    if spec.get("choices"):
        parts.append("One of " + ", ".join(f"`{_inline(c)}`" for c in spec["choices"]) + ".")
    if isinstance(spec.get("options"), Mapping):
        keys = [f"`{k}`" + (" (required)" if v.get("required") else "")
                for k, v in spec["options"].items()]
        parts.append("Keys: " + ", ".join(keys) + ".")
    if spec.get("no_log"):
        parts.append("Secret: never logged (keep it in a vault).")
    return _cell(" ".join(p for p in parts if p))


def _type(spec: Mapping[str, Any]) -> str:
    kind = str(spec.get("type", "str"))
    if kind == "list" and spec.get("elements"):
        kind = f"list of {spec['elements']}"
    return kind


def spec_default(spec: Mapping[str, Any]) -> tuple[bool, Any]:
    """``(True, value)`` when the spec gives a default; a dict's default may come from its
    sub-options' defaults (``nomad_ports``)."""
    if "default" in spec:
        return True, spec["default"]
    subs = spec.get("options")
    if spec.get("type") == "dict" and isinstance(subs, Mapping) and subs and all(
            "default" in v for v in subs.values()):
        return True, {k: v["default"] for k, v in subs.items()}
    return False, None


def _default(spec: Mapping[str, Any]) -> str:
    if spec.get("required"):
        return "**required**"
    known, value = spec_default(spec)
    if not known:
        return "*see meaning*"
    return f"`{_cell(_inline(value))}`"


def load_options(role_dir: Path) -> dict[str, dict[str, Any]]:
    """The options of every entry point of a role, in file order (``main`` first)."""
    path = role_dir / "meta" / "argument_specs.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RoleDocError(f"{path}: cannot read the argument specs: {exc}") from exc
    specs = (data or {}).get("argument_specs")
    if not isinstance(specs, Mapping) or not specs:
        raise RoleDocError(f"{path}: no argument_specs entry points")
    options: dict[str, dict[str, Any]] = {}
    for name in sorted(specs, key=lambda n: (n != "main", n)):
        for var, spec in (specs[name].get("options") or {}).items():
            options.setdefault(var, spec or {})
    return options


def render_table(options: Mapping[str, Mapping[str, Any]]) -> str:
    """The markdown table of a role's variables, in the specs' order."""
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for var, spec in options.items():
        lines.append(f"| `{var}` | {_type(spec)} | {_default(spec)} | {_description(spec)} |")
    return "\n".join(lines)


def render_readme(readme: str, table: str, path: Path) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    return replace_between(readme, BEGIN, END, table, path, RoleDocError)


def role_dirs(roles_dir: Path) -> list[Path]:
    return sorted(p.parent.parent for p in roles_dir.glob("*/meta/argument_specs.yml"))


def stale_roles(roles_dir: Path, *, write: bool) -> list[str]:
    """Roles whose README table differs from their specs; rewrites them when ``write``."""
    stale = []
    for role in role_dirs(roles_dir):
        readme_path = role / "README.md"
        if not readme_path.is_file():
            raise RoleDocError(f"{readme_path}: missing (every role documents its variables)")
        old = readme_path.read_text()
        new = render_readme(old, render_table(load_options(role)), readme_path)
        if new != old:
            stale.append(role.name)
            if write:
                readme_path.write_text(new)
    return stale


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.roledoc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a table differs from its specs")
    parser.add_argument("--roles", type=Path, default=ROOT / "roles", help="roles directory")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        stale = stale_roles(args.roles, write=not args.check)
    except RoleDocError as exc:
        print(f"roledoc: error: {exc}", file=sys.stderr)
        return 2
    if args.check and stale:
        print(f"roledoc: variable tables out of date for: {', '.join(stale)}; "
              f"run `{REGENERATE}`", file=sys.stderr)
        return 1
    for name in stale:
        print(f"roledoc: updated roles/{name}/README.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
