"""Every code block in the README runs, as written, against real meshes.

The blocks are taken from README.md itself; the only changes made to them are where they
run: the ports and paths they name (8080, 50051, 9090, 60051, 60052, /srv/vs) are mapped onto free
ports and a temp dir, `KEY=...`-style placeholders come from the environment, and
`grpcurl` (not packaged) is tests/support/grpcurl.py, which does the same through server
reflection. The meshes are the ones the README's own `vidsynth up` lines start. A block no
runner here knows fails the test, so a new snippet cannot go unrun.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.identities import API_KEYS, mesh_env
from tests.support.ports import free_port, free_port_block

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PUBLIC_API = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "vidsynth.v1.CleanupService",
    "vidsynth.v1.ProgressService",
    "vidsynth.v1.SessionService",
    "vidsynth.v1.StageRunnerService",
    "vidsynth.v1.ValidatorService",
]
PLACEHOLDER = re.compile(r"^\s*(export\s+)?[A-Z_]+=\.\.\.")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int

    def lines(self) -> list[str]:
        """Shell lines to run: placeholders (`KEY=...`) dropped, continuations joined."""
        joined = self.text.replace("\\\n", " ")
        return [line for line in joined.splitlines() if line.strip() and not PLACEHOLDER.match(line)]


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(match.group(1), match.group(2), text[: match.start()].count("\n") + 1)
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)
    ]


def kind_of(block: Block) -> str:
    """Which runner below runs this block ("" when none does)."""
    rules = [
        ("commands", lambda b: "bash scripts/demo.sh" in b.text),
        ("up", lambda b: b.text.startswith(".venv/bin/vidsynth up")),
        ("mesh_tls", lambda b: "VIDSYNTH_MESH_TLS=true" in b.text),
        ("tls", lambda b: "VIDSYNTH_TLS_CA=" in b.text),
        ("diagram", lambda b: b.language == "" and "──▶" in b.text),
        ("backends", lambda b: b.language == "toml"),
        ("cli", lambda b: "vidsynth submit" in b.text),
        ("keys", lambda b: "vidsynth keys add" in b.text),
        ("curl", lambda b: b.language == "sh" and b.text.lstrip().startswith("KEY=")),
        ("grpcurl", lambda b: "grpcurl" in b.text),
        ("node", lambda b: b.language == "js"),
    ]
    return next((name for name, rule in rules if rule(block)), "")


def block(kind: str) -> Block:
    found = [b for b in readme_blocks() if kind_of(b) == kind]
    assert len(found) == 1, f"expected one README block of kind {kind}, found {len(found)}"
    return found[0]


@dataclass
class Mesh:
    process: subprocess.Popen
    log: Path
    http_port: int
    grpc_port: int
    data_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "vidsynth is up" not in self.output():
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


class Mapping:
    """Where the README's addresses and paths are in this test run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port, self.grpc_port = free_port(), free_port_block()
        self.tls_http_port, self.tls_grpc_port = free_port(), free_port_block()
        self.srv = workdir / "srv-vs"

    def apply(self, text: str) -> str:
        replacements = {
            "127.0.0.1:8080": f"127.0.0.1:{self.http_port}",
            "127.0.0.1:50051": f"127.0.0.1:{self.grpc_port}",
            "127.0.0.1:9090": f"127.0.0.1:{self.tls_http_port}",
            "--http-port 9090": f"--http-port {self.tls_http_port}",
            "--grpc-port 60051": f"--grpc-port {self.tls_grpc_port}",
            "127.0.0.1:60051": f"127.0.0.1:{self.tls_grpc_port}",
            "127.0.0.1:60052": f"127.0.0.1:{self.tls_grpc_port + 1}",
            "/srv/vs": str(self.srv),
            ".venv/bin/": f"{ROOT}/.venv/bin/",
            "samples/": f"{ROOT}/samples/",
        }
        for old, new in replacements.items():
            text = text.replace(old, new)
        return text

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **mesh_env(),
            "PATH": f"{ROOT}/.venv/bin:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            # `vidsynth up` without flags: its ports come from these (the flags' environment).
            "VIDSYNTH_HTTP_PORT": str(self.http_port),
            "VIDSYNTH_GRPC_PORT": str(self.grpc_port),
            "VIDSYNTH_PROCESSING_MODE": "simulation",
            "KEY": API_KEYS["alice"],
            "VIDSYNTH_API_KEY": API_KEYS["alice"],
            **extra,
        }


def run_shell(script: str, mapping: Mapping, cwd: Path | None = None, timeout: float = 300, **env: str):
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd or mapping.workdir,
        env=mapping.env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def mapping(tmp_path_factory) -> Mapping:
    return Mapping(tmp_path_factory.mktemp("readme"))


@pytest.fixture(scope="module")
def meshes(mapping) -> Iterator[dict[str, Mesh]]:
    """The README's own `vidsynth up` lines, started as written (mapped): plain and TLS."""
    up_lines = [line for line in block("up").lines() if "vidsynth up" in line]
    assert len(up_lines) == 2
    started: dict[str, Mesh] = {}
    try:
        for name, line, http_port, grpc_port, data_dir in (
            ("plain", up_lines[0], mapping.http_port, mapping.grpc_port, mapping.workdir / "var"),
            ("tls", up_lines[1], mapping.tls_http_port, mapping.tls_grpc_port, mapping.srv),
        ):
            command = mapping.apply(line.split("#", 1)[0])
            log = mapping.workdir / f"up-{name}.log"
            with log.open("w") as handle:
                process = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"],
                    cwd=mapping.workdir,
                    env=mapping.env(),
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            started[name] = Mesh(process, log, http_port, grpc_port, data_dir)
        for mesh in started.values():
            mesh.wait_up()
        yield started
    finally:
        for mesh in started.values():
            mesh.stop()


def test_every_readme_block_has_a_runner() -> None:
    unknown = [(b.line, b.text.splitlines()[0]) for b in readme_blocks() if not kind_of(b)]
    assert not unknown, f"README blocks no test runs: {unknown}"


def test_the_up_block_starts_both_meshes_as_written(meshes) -> None:
    assert "--tls" in block("up").text
    assert (meshes["tls"].data_dir / "tls" / "ca.pem").is_file()
    assert f"http://127.0.0.1:{meshes['plain'].http_port}" in meshes["plain"].output()
    assert f"https://127.0.0.1:{meshes['tls'].http_port}" in meshes["tls"].output()


def test_the_curl_block_runs_a_job_and_follows_it(meshes, mapping) -> None:
    result = run_shell(mapping.apply(block("curl").text.replace("KEY=...", "")), mapping, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "event: job.queued" in result.stdout and "event: job.completed" in result.stdout
    assert '"accepted":true' in result.stdout.replace(" ", "")


def test_the_grpcurl_block_runs_through_reflection_at_g(meshes, mapping) -> None:
    prelude = f'grpcurl() {{ "{sys.executable}" -m tests.support.grpcurl "$@"; }}\n'
    script = prelude + "\n".join(mapping.apply(line) for line in block("grpcurl").lines())
    result = run_shell(script, mapping, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = result.stdout.split("{", 1)[0].split()
    assert listed == PUBLIC_API  # exactly the five public services, health and reflection
    assert '"status": "SERVING"' in result.stdout


def test_the_node_block_follows_a_job(meshes, mapping) -> None:
    headers = {"Authorization": f"Bearer {API_KEYS['alice']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{mapping.http_port}", headers=headers, timeout=60) as http:
        session_id = http.post("/v1/sessions", json={}).json()["session_id"]
        for kind, name in (("face", "portrait.jpg"), ("voice", "voice.wav")):
            with (ROOT / "samples" / name).open("rb") as handle:
                assert http.post(
                    f"/v1/sessions/{session_id}/assets/{kind}", files={"file": handle}
                ).is_success
        assert http.post(f"/v1/sessions/{session_id}/jobs", json={"script_text": "Node."}).status_code == 202
    script = ROOT / "tests" / "node" / ".readme-snippet.js"  # beside node_modules, so require() finds them
    script.write_text(mapping.apply(block("node").text))
    try:
        result = subprocess.run(
            ["node", str(script)],
            cwd=ROOT,
            env=mapping.env(S=session_id),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        script.unlink()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("EVENT_TYPE_JOB_QUEUED") and lines[-1] == "EVENT_TYPE_JOB_COMPLETED 100"


def test_the_cli_block_runs_as_written(meshes, mapping, tmp_path) -> None:
    for name, sample in (("me.jpg", "portrait.jpg"), ("me.wav", "voice.wav")):
        (tmp_path / name).write_bytes((ROOT / "samples" / sample).read_bytes())
    target = {
        "VIDSYNTH_GRPC_TARGET": f"127.0.0.1:{mapping.grpc_port}",
        "VIDSYNTH_URL": f"http://127.0.0.1:{mapping.http_port}",
        "VIDSYNTH_API_KEY": API_KEYS["root"],  # an admin, for the cleanup line
    }
    result = run_shell("\n".join(block("cli").lines()), mapping, cwd=tmp_path, **target)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "hello.mp4").read_bytes()[4:8] == b"ftyp"
    thumbnails = list(tmp_path.glob("job_*-thumbnail.jpg"))
    assert len(thumbnails) == 1 and thumbnails[0].read_bytes()[:3] == b"\xff\xd8\xff"
    assert "quarantine" in result.stdout + result.stderr

    health = next(line for line in block("up").lines() if "vidsynth health" in line)
    checked = run_shell(mapping.apply(health), mapping, **target)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = dict(re.findall(r"│ (\w+)\s+│ (\w+)\s+│", checked.stdout))
    assert rows == dict.fromkeys(
        ["session", "validator", "stage_runner", "progress", "cleanup", "gateway"], "SERVING"
    )


def test_the_keys_block_writes_hashes_only(mapping) -> None:
    keys_file = mapping.srv / "api-keys"
    script = mapping.apply(block("keys").text) + '\necho "$KEY"'
    result = run_shell(script, mapping)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    revoked = result.stdout.splitlines()[-1]
    assert revoked.startswith("vsk_")
    written = keys_file.read_text()
    assert revoked not in written and "alice" not in written  # alice's only key was revoked
    assert re.search(r"^sha256:[0-9a-f]{64} root admin$", written, re.M)
    assert keys_file.stat().st_mode & 0o777 == 0o600


def test_the_tls_block_reaches_the_tls_mesh(meshes, mapping) -> None:
    result = run_shell(mapping.apply(block("tls").text), mapping)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "ok"}


def test_the_mesh_tls_block_checks_every_service_with_the_edges_certificate(meshes, mapping) -> None:
    """Run after the TLS block, as the README reads (it exports VIDSYNTH_TLS_CA first)."""
    script = mapping.apply(block("tls").text + "\n" + block("mesh_tls").text)
    result = run_shell(script, mapping)
    assert result.returncode == 0, result.stdout + result.stderr
    states = {line.split()[1]: line.split()[3] for line in result.stdout.splitlines() if line.count("│") == 3}
    expected = ["session", "validator", "stage_runner", "progress", "cleanup", "gateway"]
    assert states == dict.fromkeys(expected, "SERVING"), result.stdout


def test_the_backends_block_is_the_shipped_file() -> None:
    shown = tomllib.loads(block("backends").text)["backends"]
    shipped = tomllib.loads((ROOT / "services" / "stage_runner" / "backends.toml").read_text())["backends"]
    for name, backend in shown.items():
        assert backend["argv"] == shipped[name]["argv"], name


def test_the_diagram_names_the_ports_up_uses() -> None:
    diagram = block("diagram").text
    for label in (
        "session      (G+1)",
        "validator    (G+2)",
        "stage_runner (G+3)",
        "progress     (G+4)",
        "cleanup      (G+5)",
        "gateway (G+6)",
        "gateway (G+7)",
    ):
        assert label in diagram, label


def test_the_demo_command_renders_the_samples(mapping, tmp_path) -> None:
    """`bash scripts/demo.sh` as written (its ports from the environment). Its twin,
    `bash scripts/test.sh`, is the command running this test."""
    commands = block("commands").lines()
    assert [line.split("#")[0].strip() for line in commands] == [
        "bash scripts/demo.sh",
        "bash scripts/test.sh",
    ]
    ports = {"VIDSYNTH_HTTP_PORT": str(free_port()), "VIDSYNTH_GRPC_PORT": str(free_port_block())}
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    result = run_shell(
        f"bash {ROOT}/scripts/demo.sh --data-dir {workdir}/var --out {workdir}/demo.mp4",
        mapping,
        cwd=ROOT,
        timeout=600,
        VIDSYNTH_PROCESSING_MODE="auto",
        **ports,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (workdir / "demo.mp4").read_bytes()[4:8] == b"ftyp"
