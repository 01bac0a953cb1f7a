"""Generate the settings table of docs/configuration.md from ``pipecatapp.config``.

The models in pipecatapp/config.py are the one home of a setting's type, range, defaults
(per profile) and meaning; the table between the two marker lines below is generated:

    python -m devtools.settingsdoc            # rewrite the table
    python -m devtools.settingsdoc --check    # exit 1 when the table differs from the models
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from devtools.markers import replace_between
from pipecatapp import config

BEGIN = (
    "<!-- BEGIN SETTINGS: generated from pipecatapp/config.py by "
    "`python -m devtools.settingsdoc`; do not edit by hand -->"
)
END = "<!-- END SETTINGS -->"
REGENERATE = "python -m devtools.settingsdoc"
DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


class SettingsDocError(Exception):
    """The document cannot be updated; the message names the file."""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _value(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{_cell(str(value))}`"


def _type(info: FieldInfo) -> str:
    kind = info.annotation
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(f"`{c}`" for c in get_args(kind))
    name = {bool: "bool", int: "int", float: "number", str: "text", SecretStr: "secret"}.get(
        kind, str(kind))
    lo, hi = config.bounds(info)
    if kind in (int, float) and (lo, hi) != (float("-inf"), float("inf")):
        name += f", {lo:g} to {hi:g}"
    return name


def _get(cfg: config.AppConfig, name: str) -> Any:
    value: Any = cfg
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _env(name: str) -> str:
    names = [config.env_name(name)] + [v for v, n in config.FOREIGN_ENV.items() if n == name]
    return ", ".join(f"`{n}`" for n in names)


def render_table() -> str:
    """The markdown table of every setting, in declaration order."""
    tuned, stock = config.AppConfig(), config.AppConfig(profile="stock")
    lines = ["| setting | type | default | `stock` | environment | meaning |",
             "|---|---|---|---|---|---|"]
    for name, info in config.fields().items():
        default, other = _get(tuned, name), _get(stock, name)
        stock_cell = _value(other) if name != "profile" and other != default else ""
        meaning = _cell(info.description or "")
        if info.annotation is SecretStr:
            meaning += " Secret: never logged."
        lines.append(f"| `{name}` | {_type(info)} | {_value(default)} | {stock_cell} | "
                     f"{_env(name)} | {meaning} |")
    return "\n".join(lines)


def render_doc(text: str, table: str, path: Path) -> str:
    """``text`` with what lies between the markers replaced by ``table``."""
    return replace_between(text, BEGIN, END, table, path, SettingsDocError)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.settingsdoc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when the table differs from the models")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document to update")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        old = args.doc.read_text()
        new = render_doc(old, render_table(), args.doc)
    except (OSError, SettingsDocError) as exc:
        print(f"settingsdoc: error: {exc}", file=sys.stderr)
        return 2
    if new == old:
        return 0
    if args.check:
        print(f"settingsdoc: the settings table in {args.doc} is out of date; run "
              f"`{REGENERATE}`", file=sys.stderr)
        return 1
    args.doc.write_text(new)
    print(f"settingsdoc: updated {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
