"""`buf lint` and `buf breaking` on protos/, with buf.yaml at the repository root and the
buf binary from npm's @bufbuild/buf (tools/buf, installed by scripts/setup.sh).

The breaking check compares the protos with the previous commit's. A commit that breaks
the API on purpose says so in a `Proto-Breaking-Change: <why>` trailer of its message (a
merge commit in the merge's message); without one, any break fails the test.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"
BREAKING_TRAILER = "Proto-Breaking-Change"


def run(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def buf() -> Path:
    assert BUF.exists(), f"{BUF} is missing: run `bash scripts/setup.sh` (npm ci in tools/buf)"
    return BUF


def test_protos_pass_buf_lint(buf) -> None:
    result = run(buf, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("addition", "complaint"),
    [
        ("message Undocumented {\n  // A field.\n  string id = 1;\n}\n", 'Message "Undocumented"'),
        ("// An enum.\nenum Colour {\n  // Zero.\n  RED = 0;\n}\n", "RED"),
        ("// A message.\nmessage Loose {\n  string id = 1;\n}\n", 'Field "id"'),
    ],
    ids=["uncommented-message", "unprefixed-enum", "uncommented-field"],
)
def test_buf_lint_refuses_what_the_rules_forbid(buf, tmp_path: Path, addition: str, complaint: str) -> None:
    """The configuration really lints: a copy of protos/ with one violation fails."""
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    common = tmp_path / "protos" / "vidsynth" / "v1" / "common.proto"
    common.write_text(common.read_text() + "\n" + addition)
    result = run(buf, "lint", cwd=tmp_path)
    assert result.returncode != 0 and complaint in result.stdout, result.stdout + result.stderr


def git(*argv: str) -> subprocess.CompletedProcess:
    return run("git", *argv)


def previous_commit() -> str:
    """HEAD~1, or a failure that says how to get it (never a skip)."""
    found = git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
    if found.returncode != 0:
        shallow = git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        pytest.fail(
            "buf breaking compares protos/ with the previous commit, which this checkout does not have"
            + (" (a shallow clone: run `git fetch --deepen=1`)" if shallow else "")
            + ". Clone with history (no --depth 1) to run the test command.",
            pytrace=False,
        )
    return found.stdout.strip()


def export_protos(commit: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "protos"], cwd=ROOT, capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "protos"


def test_buf_breaking_against_the_previous_commit(buf, tmp_path: Path) -> None:
    previous = previous_commit()
    against = export_protos(previous, tmp_path)
    result = run(buf, "breaking", "--against", against)
    assert result.returncode in (0, 100), result.stdout + result.stderr  # 100: breaks found
    acknowledged = git("log", "-1", f"--format=%(trailers:key={BREAKING_TRAILER},valueonly)").stdout.strip()
    if result.returncode == 100 and acknowledged:
        print(f"breaking changes acknowledged by the commit ({acknowledged}):\n{result.stdout}")
        return
    assert result.returncode == 0, (
        f"protos/ breaks compatibility with {previous[:12]}:\n{result.stdout}\n"
        f"Keep field numbers, names and RPCs (add, deprecate, reserve), or, if the break is "
        f"intended, say why in a `{BREAKING_TRAILER}: <why>` trailer of the commit message."
    )


def test_buf_breaking_detects_a_break(buf, tmp_path: Path) -> None:
    """The comparison really runs: renumbering a field is a break."""
    against = tmp_path / "before" / "protos"
    shutil.copytree(ROOT / "protos", against)
    changed = tmp_path / "after"
    shutil.copytree(ROOT / "protos", changed / "protos")
    shutil.copy(ROOT / "buf.yaml", changed / "buf.yaml")
    session = changed / "protos" / "vidsynth" / "v1" / "session.proto"
    text = session.read_text()
    assert "string display_name = 1;" in text
    session.write_text(text.replace("string display_name = 1;", "string display_name = 7;"))
    result = run(buf, "breaking", "--against", against, cwd=changed)
    assert result.returncode == 100 and "display_name" in result.stdout, result.stdout + result.stderr
