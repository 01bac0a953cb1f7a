"""The settings table of docs/configuration.md is generated from pipecatapp/config.py
(python -m devtools.settingsdoc) and matches it."""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools import settingsdoc
from pipecatapp import config


def test_the_table_in_the_docs_matches_the_settings_models() -> None:
    text = settingsdoc.DOC.read_text()
    assert text == settingsdoc.render_doc(text, settingsdoc.render_table(), settingsdoc.DOC), (
        f"{settingsdoc.DOC}: the settings table differs from pipecatapp/config.py; "
        f"regenerate it with `{settingsdoc.REGENERATE}`")


def test_the_table_has_every_setting_with_both_profiles_and_the_nomad_names() -> None:
    rows = {row.split(" | ")[0].strip("| `"): row
            for row in settingsdoc.render_table().splitlines()[2:]}
    assert list(rows) == config.setting_names()
    assert rows["stt.beam_size"] == (
        "| `stt.beam_size` | int, 1 to 10 | `1` | `5` | `PIPECATAPP_STT_BEAM_SIZE` | "
        "Whisper beam size; 1 = greedy. |")
    assert "| `PIPECATAPP_LLM_NOMAD_TOKEN`, `NOMAD_TOKEN` |" in rows["llm.nomad_token"]
    assert rows["llm.nomad_token"].endswith("Secret: never logged. |")
    assert "| one of `whisper`, `realtimestt` | `whisper` |  |" in rows["stt.engine"]
    assert all(row.count(" | ") == 5 and not row.endswith("|  |") for row in rows.values())


def test_check_fails_on_a_stale_table_and_regenerating_fixes_it(tmp_path: Path, capsys) -> None:
    doc = tmp_path / "configuration.md"
    shutil.copy(settingsdoc.DOC, doc)
    doc.write_text(doc.read_text().replace("Whisper beam size; 1 = greedy.", "Beams."))
    assert settingsdoc.main(["--check", "--doc", str(doc)]) == 1
    assert settingsdoc.REGENERATE in capsys.readouterr().err
    assert settingsdoc.main(["--doc", str(doc)]) == 0
    assert doc.read_text() == settingsdoc.DOC.read_text()
    assert settingsdoc.main(["--check", "--doc", str(doc)]) == 0


def test_a_doc_without_markers_is_an_error_naming_the_file(tmp_path: Path, capsys) -> None:
    doc = tmp_path / "configuration.md"
    doc.write_text(settingsdoc.DOC.read_text().replace(settingsdoc.END, ""))
    assert settingsdoc.main(["--check", "--doc", str(doc)]) == 2
    err = capsys.readouterr().err
    assert str(doc) in err and "marker" in err


def test_the_example_yaml_file_in_the_docs_loads(tmp_path: Path) -> None:
    text = settingsdoc.DOC.read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    conf = tmp_path / "pipecatapp.yaml"
    conf.write_text(example)
    cfg = config.load_config(config_file=conf, environ={})
    assert (cfg.transport, cfg.turn.half_duplex, cfg.tts.length_scale) == ("local", True, 0.9)
