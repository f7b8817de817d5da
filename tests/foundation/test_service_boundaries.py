"""No service imports another service's package, and the gateway stays light.

Services share code only through libs/common (DESIGN.md, "Conventions"); a service that
imported another's package would load that service's dependencies (the stage runner's
media stack, for one) and couple the two behind the protos' back.

The command line (vidsynth/) is not a service: `vidsynth ... --json` prints results in the
gateway's HTTP spelling through services/gateway/views.py, and `vidsynth up` sizes the edge's
body cap from the validator's own settings class, so both stay where they are defined.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = ROOT / "services"
HEAVY_MODULES = ("numpy", "cv2", "PIL")


def _imported_modules(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in `tree`, relative ones resolved against `module`,
    plus importlib.import_module("...") calls with a literal name."""
    package = module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from services import stage_runner` names the package in the alias.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def foreign_imports(source: str, path: Path) -> list[str]:
    """Imports in the module at `path` (under services/) of another service's package."""
    relative = path.relative_to(ROOT).with_suffix("")
    module = ".".join(relative.parts)
    own = relative.parts[1]
    problems = []
    for line, name in _imported_modules(ast.parse(source, str(path)), module):
        parts = name.split(".")
        if parts[0] == "services" and len(parts) > 1 and parts[1] != own:
            problems.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return problems


def test_the_check_sees_every_way_of_importing_another_service():
    gateway_module = SERVICES_DIR / "gateway" / "routes_outputs.py"
    for source in (
        "from services.stage_runner.jobs import output_path",
        "import services.validator.policy",
        "from services import progress",
        "from ..session import store",
        "def f():\n    from services.cleanup import fs\n",
        "import importlib\nimportlib.import_module('services.stage_runner.jobs')",
    ):
        assert foreign_imports(source, gateway_module), source
    for source in (
        "from services.gateway import views",
        "from . import views",
        "from libs.common.outputs import output_path",
        "import servicesx",
    ):
        assert not foreign_imports(source, gateway_module), source


def test_no_service_imports_another_services_package():
    modules = sorted(SERVICES_DIR.rglob("*.py"))
    assert len(modules) > 100  # every service's modules, not an empty glob
    problems = [p for path in modules for p in foreign_imports(path.read_text(encoding="utf-8"), path)]
    assert problems == [], "shared code belongs in libs/common:\n" + "\n".join(problems)


def test_the_gateway_app_loads_no_media_stack():
    # A fresh interpreter: this test process has long imported numpy for other tests.
    probe = (
        "import json, sys\n"
        "from libs.common.settings import MeshSettings\n"
        "import services.gateway.server\n"
        "from services.gateway.app import create_app\n"
        "create_app(MeshSettings()).openapi()\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
