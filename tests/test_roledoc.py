"""Each role documents its variables once: meta/argument_specs.yml is the source, the table in
roles/<role>/README.md is generated from it (python -m devtools.roledoc), and defaults/main.yml
sets nothing the specs do not describe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from devtools import roledoc

ROOT = Path(__file__).resolve().parent.parent
ROLES = roledoc.role_dirs(ROOT / "roles")


def test_every_role_is_covered() -> None:
    names = {r.name for r in ROLES}
    assert {"nomad", "primacpp", "pipecatapp", "preflight"} <= names, names


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_readme_table_matches_argument_specs(role: Path) -> None:
    readme = role / "README.md"
    assert readme.is_file(), f"{readme} is missing"
    text = readme.read_text()
    expected = roledoc.render_readme(text, roledoc.render_table(roledoc.load_options(role)),
                                     readme)
    assert text == expected, (
        f"roles/{role.name}/README.md: the variable table differs from "
        f"meta/argument_specs.yml; regenerate it with `{roledoc.REGENERATE}`")


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_are_described_by_the_specs(role: Path) -> None:
    """Every variable in defaults/main.yml has its entry in the argument specs, and where both
    give a plain (untemplated) default, they agree."""
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    options = roledoc.load_options(role)
    missing = sorted(set(defaults or {}) - set(options))
    assert not missing, (f"roles/{role.name}: in defaults/main.yml but not in "
                         f"meta/argument_specs.yml: {', '.join(missing)}")
    differ = []
    for name, value in (defaults or {}).items():
        known, spec_value = roledoc.spec_default(options[name])
        templated = "{{" in yaml.safe_dump(value)
        if known and not templated and spec_value != value:
            differ.append(f"{name}: specs {spec_value!r}, defaults {value!r}")
    assert not differ, f"roles/{role.name}: defaults differ:\n" + "\n".join(differ)


def _copy_role(tmp_path: Path, name: str = "preflight") -> Path:
    roles = tmp_path / "roles"
    shutil.copytree(ROOT / "roles" / name, roles / name)
    return roles


def test_check_fails_on_a_changed_spec_and_regenerating_fixes_it(tmp_path: Path, capsys) -> None:
    roles = _copy_role(tmp_path)
    spec_path = roles / "preflight" / "meta" / "argument_specs.yml"
    spec_path.write_text(spec_path.read_text().replace(
        "Largest ring prima.cpp supports.", "Largest ring | allowed <here>."))
    assert roledoc.main(["--check", "--roles", str(roles)]) == 1
    assert roledoc.REGENERATE in capsys.readouterr().err
    assert roledoc.main(["--roles", str(roles)]) == 0
    readme = (roles / "preflight" / "README.md").read_text()
    assert "| `preflight_max_world_size` | int | `32` | Largest ring \\| allowed &lt;here&gt;. |" \
        in readme
    assert roledoc.main(["--check", "--roles", str(roles)]) == 0


def test_a_readme_without_markers_is_an_error_naming_the_file(tmp_path: Path, capsys) -> None:
    roles = _copy_role(tmp_path)
    readme = roles / "preflight" / "README.md"
    readme.write_text(readme.read_text().replace(roledoc.END, ""))
    assert roledoc.main(["--check", "--roles", str(roles)]) == 2
    err = capsys.readouterr().err
    assert str(readme) in err and "marker" in err


def test_table_cells() -> None:
    table = roledoc.render_table({
        "x_list": {"type": "list", "elements": "str", "default": ["a", "b"],
                   "description": ["Two", "lines."]},
        "x_secret": {"type": "str", "default": "", "no_log": True, "description": "Key."},
        "x_rank": {"type": "int", "required": True, "description": "Rank."},
        "x_ports": {"type": "dict", "description": "Ports.",
                    "options": {"http": {"type": "int", "default": 1}}},
        "x_mode": {"type": "str", "choices": ["a", "b"], "description": "Mode."},
        "x_dir": {"type": "str", "description": "Default: {{ role_path }}/../.."},
        "x_bin": {"type": "str", "description": "Default: {{ x_home }}/bin."},
    })
    rows = table.splitlines()[2:]
    assert rows[0] == "| `x_list` | list of str | `[a, b]` | Two lines. |"
    assert rows[1] == ('| `x_secret` | str | `""` | Key. Secret: never logged '
                       "(keep it in a vault). |")
    assert rows[2] == "| `x_rank` | int | **required** | Rank. |"
    assert rows[3] == "| `x_ports` | dict | `{http: 1}` | Ports. Keys: `http`. |"
    assert rows[4] == "| `x_mode` | str | *see meaning* | Mode. One of `a`, `b`. |"
    assert rows[5] == "| `x_dir` | str | *see meaning* | Default: `{{ role_path }}/../..` |"
    assert rows[6] == "| `x_bin` | str | *see meaning* | Default: `{{ x_home }}/bin`. |"
