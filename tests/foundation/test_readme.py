"""The README documents what the code does."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from libs.common.settings import VidsynthSettings
from scripts.config_readers import UP, readers
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


def test_every_setting_is_read_by_some_process() -> None:
    """Found by reading the code that uses each field (scripts/config_readers.py), not the
    settings classes: a setting nothing reads is dead weight, or a bug."""
    classes = settings_classes()
    found = readers(classes)
    unread = sorted(f"VIDSYNTH_{name.upper()}" for name, processes in found.items() if not processes)
    assert unread == [], f"settings that nothing reads: {unread}"


def test_the_reader_scan_finds_an_unread_setting() -> None:
    class Unread(VidsynthSettings):
        nobody_reads_this_setting_anywhere: int = Field(1, description="test")

    assert readers([Unread]) == {"nobody_reads_this_setting_anywhere": set()}


def test_read_by_names_the_processes_that_read_each_setting() -> None:
    every_service = {"cleanup", "gateway", "progress", "session", "stage_runner", "validator"}
    found = {f"VIDSYNTH_{name.upper()}": processes for name, processes in readers(settings_classes()).items()}
    # What the code does, checked by hand: where each of these is read.
    assert found["VIDSYNTH_HTTP_HOST"] == {"gateway", UP}  # the gateway listens there; `up` prints the URL
    assert found["VIDSYNTH_GATEWAY_CORS_ORIGINS"] == {"gateway"}
    assert found["VIDSYNTH_PROCESSING_MODE"] == {"stage_runner"}
    assert found["VIDSYNTH_REDIS_URL"] == {"session", "progress", "stage_runner"}
    assert found["VIDSYNTH_VALIDATOR_FACE_MAX_BYTES"] == {"validator", UP}  # the edge's body cap
    assert found["VIDSYNTH_CLEANUP_RETRY_AFTER_SECONDS"] == {"cleanup"}
    assert found["VIDSYNTH_EDGE_NGINX"] == {UP}
    assert every_service <= found["VIDSYNTH_MESH_TOKEN"]
    table = render_table()
    assert "| `VIDSYNTH_HTTP_HOST` |" in table and "| gateway, `vidsynth up` |" in table
