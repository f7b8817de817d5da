"""docs/architecture.md names real files: a module that moves or goes fails here, so the
walk-through cannot drift from the tree silently."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from libs.common.progress_events import EVENT_TYPES_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
# A path in backticks: at least one slash, ending in a file name with an extension, or a
# directory (trailing slash). Placeholders like `<data>/...` or `tests/<service>/` are not paths.
PATH = re.compile(r"`((?:[\w.-]+/)+(?:[\w.-]+\.\w+)?)`")
# `Class.method` or `module.function`, e.g. `JobManager.start` or `checkpoints.publish_outputs`.
SYMBOL = re.compile(r"`([A-Za-z_]\w*)\.([a-z_]\w*)`")
CODE_DIRS = ("services", "libs", "vidsynth")


def named_paths(text: str) -> list[str]:
    return [match.group(1) for match in PATH.finditer(text) if "<" not in match.group(1)]


def test_every_path_the_architecture_doc_names_exists() -> None:
    paths = named_paths(DOC.read_text())
    assert len(paths) > 80, "the doc should name the modules it walks through"
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def _functions(body: list[ast.stmt]) -> set[str]:
    return {node.name for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def definitions() -> dict[str, set[str]]:
    """Module name or class name -> the functions defined directly in it, over the code."""
    found: dict[str, set[str]] = {}
    for top in CODE_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            tree = ast.parse(path.read_text())
            found.setdefault(path.stem, set()).update(_functions(tree.body))
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    found.setdefault(node.name, set()).update(_functions(node.body))
    return found


def test_every_class_method_and_module_function_the_doc_names_exists() -> None:
    defined = definitions()
    named = {
        (owner, member)
        for owner, member in (match.groups() for match in SYMBOL.finditer(DOC.read_text()))
        # File names (`server.py`) and event types (`job.queued`) look alike; they are not code.
        if member != "py" and f"{owner}.{member}" not in EVENT_TYPES_BY_NAME
    }
    assert len(named) >= 5
    missing = [f"{owner}.{member}" for owner, member in sorted(named) if member not in defined.get(owner, ())]
    assert not missing, f"docs/architecture.md names what the code does not define: {missing}"
    assert "start" in defined["JobManager"] and "no_such_method" not in defined["JobManager"]


def test_the_doc_is_linked_from_the_readme() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()


def test_the_path_pattern_catches_a_missing_file() -> None:
    sample = "see `services/nowhere/gone.py`, `libs/common/` and `<data>/sessions/`, not `GetJob`"
    assert named_paths(sample) == ["services/nowhere/gone.py", "libs/common/"]
    assert not (ROOT / "services/nowhere/gone.py").exists()
