"""The README documents what the code does."""

from __future__ import annotations

from pathlib import Path

from scripts.gen_config_table import END, README, START, render_readme, render_table, settings_classes

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_table_matches_the_settings_classes() -> None:
    text = README.read_text()
    assert START in text and END in text
    assert text == render_readme(text), "run `python -m scripts.gen_config_table`"


def test_every_setting_is_described() -> None:
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
    assert "`VIDSYNTH_GRPC_PORT`" in render_table()


def test_readme_commands_exist_and_ci_runs_the_test_command() -> None:
    text = README.read_text()
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
