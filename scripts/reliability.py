"""Runs the reliability campaigns against real `vidsynth up` process trees on loopback and
writes docs/reliability.md from what they measured.

    .venv/bin/python -m scripts.reliability              # the full campaign (~5 minutes)
    .venv/bin/python -m scripts.reliability --load-seconds 10 --out /tmp/r.md   # a quick look

Campaigns (each bounded; every mesh is stopped when its campaign ends):
  faults  each service SIGKILLed and SIGSTOPped during a job, then Redis in the scaled set-up
  load    SSE subscribers, session creates/s and uploads/s through the gateway for N seconds
  fuzz, abuse   the property and abuse suites of tests/reliability, run by pytest
  attacks the issue-15 attacks (image bombs, trickling uploads, start+cancel cycles, a queue
          flood) and the operators' answers (force-ending a user's sessions, revoking a key),
          with their figures: CPU per bomb, the other user's upload latency, RSS before, peak
          and after, helpers left, the other user's queue position, time to take effect
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil

from tests.reliability.attacks import AttackResult, run_attacks
from tests.reliability.faults import (
    FAULT_MESH_ENV,
    FAULT_SERVICES,
    FAULT_SIGNALS,
    FaultResult,
    run_fault_case,
)
from tests.reliability.load import LOAD_MESH_ENV, LoadPlan, LoadResult, run_load
from tests.reliability.redis_fault import DurableRedis, redis_mesh_env, run_redis_fault_case
from tests.support.mesh_process import MeshProcess

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "fuzz": ["tests/reliability/test_fuzz.py", "tests/reliability/test_schema.py"],
    "abuse": ["tests/reliability/test_abuse_http.py", "tests/reliability/test_abuse_grpc.py"],
}
# RSS growth after warm-up that still counts as flat (allocator noise, caches filling).
FLAT_RSS_MB = 25.0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {memory:.1f} GiB RAM, {platform.platform()}"


def fault_campaign(work: Path) -> list[FaultResult]:
    results: list[FaultResult] = []
    mesh = MeshProcess(work / "faults" / "var", extra_env=FAULT_MESH_ENV)
    try:
        mesh.wait_up(90)
        for service in FAULT_SERVICES:
            for sig in FAULT_SIGNALS:
                mesh.wait_ready(90)
                result = asyncio.run(run_fault_case(mesh, service, sig, work))
                print(f"[faults] {service} {sig}: {result.outcome} {result.problems or 'ok'}", flush=True)
                results.append(result)
    finally:
        mesh.stop()
    server = DurableRedis(work / "redis")
    mesh = MeshProcess(work / "redis-faults" / "var", extra_env=redis_mesh_env(server.url))
    try:
        mesh.wait_up(90)
        for sig in FAULT_SIGNALS:
            mesh.wait_ready(90)
            result = asyncio.run(run_redis_fault_case(mesh, server, sig, work))
            print(f"[faults] redis {sig}: {result.outcome} {result.problems or 'ok'}", flush=True)
            results.append(result)
    finally:
        mesh.stop()
        server.stop()
    return results


def load_campaign(work: Path, plan: LoadPlan) -> LoadResult:
    mesh = MeshProcess(work / "load" / "var", extra_env=LOAD_MESH_ENV)
    try:
        mesh.wait_up(90)
        mesh.wait_ready(90)
        return asyncio.run(run_load(mesh, plan))
    finally:
        mesh.stop()


def suite_campaign(name: str, work: Path) -> dict:
    """Runs one pytest suite; its test counts and failures from the JUnit report."""
    report = work / f"{name}.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        *SUITES[name],
    ]
    completed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    tests = []
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own pytest wrote it
        failed = case.find("failure") is not None or case.find("error") is not None
        tests.append({"name": case.get("name", ""), "file": case.get("classname", ""), "failed": failed})
    print(f"[{name}] {len(tests)} tests, exit {completed.returncode}", flush=True)
    return {"tests": tests, "exit": completed.returncode, "tail": completed.stdout[-1500:]}


def _fault_rows(results: list[FaultResult]) -> list[str]:
    rows = [
        "| target | signal | outcome | SSE events (gapless) | gRPC events (gapless) | gRPC resumes | uploads kept | output | survived |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        outcome = r.outcome + (f" ({r.error_code})" if r.error_code else "")
        output = (
            "downloaded" if r.outputs_ok else ("n/a (job failed)" if r.outcome == "job.failed" else "missing")
        )
        rows.append(
            f"| {r.service} | {r.signal} | {outcome} | {len(r.sse_seqs)} | {len(r.grpc_seqs)} | {r.grpc_resumes} "
            f"| {'yes' if r.assets_kept else 'NO'} | {output} | {'yes' if r.survived else 'NO: ' + '; '.join(r.problems)} |"
        )
    return rows


def _load_rows(result: LoadResult) -> list[str]:
    rows = [
        "| operation | ok | p50 ms | p99 ms | errors | deliberate limit answers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, stats in (
        ("create session (POST /v1/sessions)", result.creates),
        ("upload (POST .../assets/{kind})", result.uploads),
        ("start job (POST .../jobs)", result.jobs),
        ("SSE subscribe to first event", result.first_event),
    ):
        s = stats.summary()
        codes = f" {s['error_codes']}" if s["error_codes"] else ""
        rows.append(
            f"| {label} | {s['ok']} | {s['p50_ms']} | {s['p99_ms']} | {s['errors']}{codes} | {s['limited']} |"
        )
    return rows


def _rss_rows(result: LoadResult) -> list[str]:
    rows = [
        "| service | start MiB | after warm-up MiB | end MiB | growth after warm-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    growth = result.rss_growth_mb()
    for name, points in sorted(result.rss_mb.items()):
        rows.append(
            f"| {name} | {points.get('start')} | {points.get('warm')} | {points.get('end')} | {growth.get(name)} MiB |"
        )
    return rows


def _attack_rows(results: list[AttackResult]) -> list[str]:
    rows = ["| attack | what was tried | outcome | figures | held |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        figures = "; ".join(f"{name}: {value}" for name, value in r.figures.items())
        held = "yes" if r.held else "NO: " + "; ".join(r.problems)
        rows.append(f"| {r.attack} | {r.tried} | {r.outcome} | {figures} | {held} |")
    return rows


def _suite_rows(suites: dict[str, dict]) -> list[str]:
    rows = ["| campaign | test | result |", "| --- | --- | --- |"]
    for name, suite in suites.items():
        for test in suite["tests"]:
            rows.append(f"| {name} | `{test['name']}` | {'FAILED' if test['failed'] else 'passed'} |")
    return rows


def summary(
    faults: list[FaultResult],
    load: LoadResult | None,
    suites: dict[str, dict],
    attacks: list[AttackResult] | None = None,
) -> dict[str, str]:
    out = {}
    if faults:
        survived = sum(r.survived for r in faults)
        out["faults"] = f"{survived}/{len(faults)} survived (no lost upload or output, no event gap)"
    if load is not None:
        errors = sum(s.summary()["errors"] for s in (load.creates, load.uploads, load.jobs))
        flat = all(g <= FLAT_RSS_MB for g in load.rss_growth_mb().values())
        p = load.plan
        out["load"] = (
            f"{p.subscribers} SSE subscribers, {p.creates_per_second:g} creates/s, {p.uploads_per_second:g} uploads/s "
            f"for {p.seconds:g} s: {errors} errors, {load.subscribers_gapless}/{p.subscribers} streams gapless, "
            f"RSS {'flat' if flat else 'GREW'} after warm-up"
        )
    for name, suite in suites.items():
        passed = sum(not t["failed"] for t in suite["tests"])
        out[name] = f"{passed}/{len(suite['tests'])} tests passed"
    if attacks:
        held = sum(r.held for r in attacks)
        out["attacks"] = f"{held}/{len(attacks)} held: " + "; ".join(
            f"{r.attack}: {key_figure(r)}" for r in attacks if key_figure(r)
        )
    return out


# The figures of each attack the summary quotes (those it has), in this order.
KEY_FIGURES = (
    "validator CPU per bomb",
    "mesh RSS before / peak / after",
    "other user's upload",
    "helpers left after the cancels",
    "bob's queue position",
    "force-end of a busy session",
    "refused everywhere after",
)


def key_figure(result: AttackResult) -> str:
    return ", ".join(f"{name} {result.figures[name]}" for name in KEY_FIGURES if name in result.figures)


def render(
    machine_line: str,
    faults,
    load: LoadResult | None,
    suites: dict[str, dict],
    started: dt.datetime,
    attacks: list[AttackResult] | None = None,
) -> str:
    lines = [
        "# Reliability report",
        "",
        "Generated by `python -m scripts.reliability` (do not edit by hand).",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine_line}",
        "- every campaign ran real `vidsynth up` process trees (simulated stages so a job lasts seconds) on loopback",
        "",
        "## Summary",
        "",
        "| campaign | result |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in summary(faults, load, suites, attacks).items()),
        "",
    ]
    if faults:
        lines += [
            "## Faults",
            "",
            "A job runs while one process is SIGKILLed (`vidsynth up` restarts it; Redis is restarted on its",
            "append-only file by the harness) or SIGSTOPped for 2 s then SIGCONTed. An SSE subscriber (through",
            "the gateway, resuming with Last-Event-ID) and a gRPC subscriber (resuming with `after_seq`) follow",
            "the session; both must see every event exactly once. A failed job must carry a catalogued code.",
            "",
            *_fault_rows(faults),
            "",
        ]
    if load is not None:
        p = load.plan
        lines += [
            "## Load",
            "",
            f"{p.subscribers} concurrent SSE subscribers over {p.streamed_sessions} sessions running jobs back to back,",
            f"{p.creates_per_second:g} session creates/s and {p.uploads_per_second:g} uploads/s (face and voice",
            f"alternating, each scanned by clamd and checked) offered open-loop for {p.seconds:g} s through the",
            f"gateway; the load generator shares the machine. {load.jobs_ended} jobs ended during the run;",
            f"{load.subscribers_complete}/{p.subscribers} subscribers saw every job end and "
            f"{load.subscribers_gapless}/{p.subscribers} saw a gapless sequence from 1.",
            f"Subscriber errors: {dict(load.subscriber_errors) or 'none'}.",
            "",
            *_load_rows(load),
            "",
            f"RSS of every service (flat: growth after warm-up at most {FLAT_RSS_MB:g} MiB):",
            "",
            *_rss_rows(load),
            "",
        ]
    if attacks:
        lines += [
            "## Attacks",
            "",
            "The cheap resource attacks of issue 15, from one API key, each against a real `vidsynth up`",
            "mesh: photo bombs and trickling uploads through the gateway (default upload limits, a 4 s grace",
            "before the minimum rate applies) while another user uploads a portrait, whose time alone is",
            "measured first in the same run; and the operators' answers without a restart: an admin",
            "force-ending a user's busy sessions, and an API key revoked in the keys file while in use",
            "(refused by the gateway and by each of the five services). RSS is the whole process tree of",
            "`vidsynth up` (clamd and the decode workers included) and the validator's own tree, settled",
            "before and after; CPU is the validator tree's, its reaped decode processes included.",
            "Jobs: 20 jobs on the built-in backends (real ffmpeg, espeak-ng, Piper) cancelled at random",
            "moments, then every process still running under the services counted (each service's one",
            "resident worker aside); and one user starting more jobs than her share before another",
            "user starts one (default queue limits).",
            "",
            *_attack_rows(attacks),
            "",
        ]
    if suites:
        lines += [
            "## Fuzzing and abuse",
            "",
            "Hypothesis properties (mutated photos and voice samples through the gateway and straight to the",
            "validator; random JSON, queries and headers), schemathesis over every operation of /openapi.json",
            "(no 5xx but the documented 503 of script generation without a Gemini key; responses match the",
            "schema), and the abuse cases (traversal and injection in ids and names, other users' ids on every",
            "route and RPC, oversized headers, slow-drip uploads, stream-token misuse, private webhook targets,",
            "per-key rate limits, internal RPCs with a user key).",
            "",
            *_suite_rows(suites),
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--creates-per-second", type=float, default=50.0)
    parser.add_argument("--uploads-per-second", type=float, default=10.0)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["faults", "load", "fuzz", "abuse", "attacks"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()[0]
    plan = LoadPlan(
        seconds=args.load_seconds,
        subscribers=args.subscribers,
        creates_per_second=args.creates_per_second,
        uploads_per_second=args.uploads_per_second,
    )
    with tempfile.TemporaryDirectory(prefix="vidsynth-reliability-") as tmp:
        work = Path(tmp)
        faults = fault_campaign(work) if "faults" not in args.skip else []
        load = load_campaign(work, plan) if "load" not in args.skip else None
        suites = {name: suite_campaign(name, work) for name in SUITES if name not in args.skip}
        attacks = run_attacks(work) if "attacks" not in args.skip else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine_line = (
        f"{machine()}; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    args.out.write_text(render(machine_line, faults, load, suites, started, attacks) + "\n")
    print(f"wrote {args.out}")
    for key, value in summary(faults, load, suites, attacks).items():
        print(f"  {key}: {value}")
    failed = (
        any(not r.survived for r in faults)
        or any(s["exit"] != 0 for s in suites.values())
        or any(not r.held for r in attacks)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
