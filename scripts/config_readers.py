"""Who reads each setting: found by reading the source, not declared.

A setting is read where some module of a process accesses its field (`settings.redis_url`,
`getattr(settings, "redis_url")`) or a property or method of its settings class that uses it
(`settings.sessions_dir` reads `data_dir`), or reads its variable from the environment
(`os.environ.get("VIDSYNTH_MESH_TOKEN")`). The reader is the process the module runs in:
`services/<name>/...` is that service, `vidsynth/cli/{up,edge,supervisor,clamd}.py` is
`vidsynth up`, the rest of `vidsynth/` the CLI, and a module of `libs/` reads for every
process that imports it (directly or through other `libs/` modules).
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("libs", "services", "vidsynth")
GENERATED = (("vidsynth", "v1"), ("vidsynth", "internal"))
UP_MODULES = frozenset({"up", "edge", "supervisor", "clamd"})
UP = "`vidsynth up`"
CLI = "`vidsynth` CLI"
SERVICES = ("cleanup", "gateway", "progress", "session", "stage_runner", "validator")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def source_modules() -> dict[str, ast.Module]:
    """Every hand-written module under libs/, services/ and vidsynth/, parsed."""
    modules = {}
    for package in SOURCE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if any(parts[: len(g)] == g for g in GENERATED):
                continue
            modules[_module_name(path)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return modules


def process_of(module: str) -> str | None:
    """The process a module runs in; None for a library module (libs/)."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return parts[1]
    if parts[0] == "vidsynth":
        return UP if parts[1:2] == ["cli"] and parts[2:3] and parts[2] in UP_MODULES else CLI
    return None


def _imports(module: str, tree: ast.Module) -> set[str]:
    names: set[str] = set()
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@functools.cache
def _importers() -> dict[str, set[str]]:
    modules = source_modules()
    found: dict[str, set[str]] = defaultdict(set)
    for module, tree in modules.items():
        for name in _imports(module, tree):
            if name in modules and name != module:
                found[name].add(module)
    return found


def processes_running(module: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The processes that run `module`: its own, or for libs/, every importer's."""
    own = process_of(module)
    if own is not None:
        return {own}
    processes: set[str] = set()
    for importer in _importers().get(module, ()):
        if importer not in seen:
            processes |= processes_running(importer, seen | {module})
    return processes


def _self_reads(node: ast.AST, fields: set[str]) -> set[str]:
    """Fields a settings class's own method or property reads through `self`."""
    reads: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self":
            reads.add(sub.attr)
        # getattr(self, f"{service}_addr"): every field with that ending.
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "getattr"
            and len(sub.args) >= 2
            and isinstance(sub.args[1], ast.JoinedStr)
        ):
            tail = sub.args[1].values[-1]
            if isinstance(tail, ast.Constant) and isinstance(tail.value, str):
                reads.update(f for f in fields if f.endswith(tail.value))
    return reads


def accessor_fields(classes: list[type[BaseSettings]]) -> dict[str, set[str]]:
    """Property or method name -> the fields it reads, for every settings class (through
    other properties too)."""
    fields = {name for cls in classes for name in cls.model_fields}
    names = {cls.__name__ for cls in classes}
    direct: dict[str, set[str]] = defaultdict(set)
    for tree in source_modules().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in names:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith(
                        "_"
                    ):
                        direct[item.name] |= _self_reads(item, fields)
    resolved = {name: {r for r in reads if r in fields} for name, reads in direct.items()}
    changed = True
    while changed:  # a property built on another property
        changed = False
        for name, reads in direct.items():
            extra = set().union(*(resolved.get(r, set()) for r in reads if r in direct)) - resolved[name]
            if extra:
                resolved[name] |= extra
                changed = True
    return resolved


def _settings_class_bodies(tree: ast.Module, names: set[str]) -> set[int]:
    """ids of the nodes inside settings classes (their own reads count through accessors)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in names:
            inside.update(id(sub) for sub in ast.walk(node))
    return inside


def _env_name(node: ast.AST) -> str | None:
    """ "VIDSYNTH_X" of os.environ.get("VIDSYNTH_X"), os.getenv(...) or os.environ["VIDSYNTH_X"]."""
    key = None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        target = node.func
        is_get = (
            target.attr == "get"
            and isinstance(target.value, ast.Attribute)
            and target.value.attr == "environ"
        )
        if is_get or target.attr == "getenv":
            key = node.args[0]
    elif (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "environ"
    ) and isinstance(node.ctx, ast.Load):
        key = node.slice
    if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("VIDSYNTH_"):
        return key.value
    return None


def _accessed_names(tree: ast.Module, skip: set[int]) -> Iterator[str]:
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            yield node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            yield node.args[1].value
        elif (env := _env_name(node)) is not None:
            yield env


def readers(classes: list[type[BaseSettings]]) -> dict[str, set[str]]:
    """Field name -> the processes that read it (empty: nothing does)."""
    fields = {name for cls in classes for name in cls.model_fields}
    by_env = {f"VIDSYNTH_{name.upper()}": name for name in fields}
    accessors = accessor_fields(classes)
    names = {cls.__name__ for cls in classes}
    found: dict[str, set[str]] = {name: set() for name in fields}
    for module, tree in source_modules().items():
        processes = processes_running(module)
        if not processes:
            continue
        for name in _accessed_names(tree, _settings_class_bodies(tree, names)):
            read = {name} & fields | accessors.get(name, set())
            if name in by_env:
                read.add(by_env[name])
            for field in read:
                found[field] |= processes
    return found


def describe(processes: set[str]) -> str:
    if not processes:
        return "nothing"
    rest = sorted(p for p in processes if p not in SERVICES)
    if set(SERVICES) <= processes:
        return ", ".join(["every service", *rest])
    return ", ".join(sorted(processes & set(SERVICES)) + rest)
