"""`bench.sessions --tracing`: what tracing costs the gateway, measured in one run.

Starts three SessionService + gateway pairs (separate processes, as `vidsynth up` would)
that differ only in their OTEL_* variables, and an OTLP/HTTP sink process
(bench/otlp_sink.py) standing in for the collector:

- off: no endpoint (the default): no SDK, no interceptor, no middleware;
- sampled out: an endpoint and OTEL_TRACES_SAMPLER=always_off: every interceptor and the
  middleware run, trace context is read and passed on, nothing is recorded;
- on: an endpoint and 100 % sampling (parentbased_always_on): every request's spans
  (gateway server and client, session server) are recorded and exported.

Every client creates a session and reads it back (as bench/sessions.py does), closed
loop, in short rounds that go through the targets in a new random order each time, so
load from anything else on the machine falls on all alike; ratios are medians over the
rounds of paired requests/s. Direct gRPC to the first pair's SessionService is the
floor. Target: the gateway with tracing on keeps >= 0.9x its throughput with tracing off.

    .venv/bin/python -m bench.sessions --tracing [--clients 32] [--seconds 4] [--rounds 8]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.sessions import Run, drive, gateway_target, grpc_target, wait_until_ready
from libs.common.heap import freeze_startup_heap
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.identities import mesh_env
from tests.support.ports import free_port, free_port_block

TRACING_RATIO_TARGET = 0.9
MODES = ("off", "sampled out", "on")


def mode_env(mode: str, sink_port: int) -> dict[str, str]:
    if mode == "off":
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_off" if mode == "sampled out" else "parentbased_always_on",
    }


def cpu_seconds(pids: list[int]) -> list[float]:
    """User + system CPU seconds of each process so far."""
    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]


async def start_pair(data_dir: Path, extra: dict[str, str]) -> tuple[list, str, int]:
    grpc_port, http_port = free_port_block(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        **mesh_env(),
        **extra,
        "VIDSYNTH_DATA_DIR": str(data_dir),
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
        "VIDSYNTH_HTTP_PORT": str(http_port),
        "VIDSYNTH_LOG_LEVEL": "warning",
        "VIDSYNTH_SESSION_MAX_PER_USER": "10000000",
        "VIDSYNTH_SESSION_MAX_GLOBAL": "10000000",
        "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "1000000",
        "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "1000000",
        "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "1000000",
    }
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdin=asyncio.subprocess.DEVNULL
        )
        for module in ("services.session", "services.gateway")
    ]
    grpc_address = f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS['session']}"
    await wait_until_ready(grpc_address, f"http://127.0.0.1:{http_port}", processes)
    return processes, grpc_address, http_port


async def dropped_spans(http_port: int) -> float:
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"http://127.0.0.1:{http_port}/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "vidsynth_trace_spans_dropped_total" and s.labels.get("origin", "gateway") == "gateway"
    )


async def main(clients: int, seconds: float, warmup: float, rounds: int) -> int:
    sink_port = free_port()
    sink = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.otlp_sink", str(sink_port), stdout=asyncio.subprocess.PIPE
    )
    assert sink.stdout is not None
    await sink.stdout.readline()  # "ready"
    processes: list = []
    try:
        with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as root:
            pairs = {}
            for mode in MODES:
                data_dir = Path(root) / mode.replace(" ", "-")
                pair_processes, grpc_address, http_port = await start_pair(
                    data_dir, mode_env(mode, sink_port)
                )
                processes += pair_processes
                pairs[mode] = (grpc_address, http_port, [p.pid for p in pair_processes])
            runs, per_round, dropped = await measure(pairs, clients, seconds, warmup, rounds)
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()
        sink.terminate()
        counts = json.loads((await sink.stdout.read()).decode().strip().splitlines()[-1])
        await sink.wait()
    return report(runs, per_round, dropped, counts, clients, seconds, rounds)


async def measure(
    pairs: dict[str, tuple[str, int, list[int]]], clients: int, seconds: float, warmup: float, rounds: int
) -> tuple[list[Run], list[list[float]], float]:
    """Closed-loop runs of direct gRPC and each pair's gateway, the targets in a new random
    order each round. Returns the runs (each with `cpu_us`: the CPU its processes, gateway
    and session, used per request), each target's requests/s per round, and the spans the
    traced gateway dropped."""
    targets = []
    async with grpc_target(pairs["off"][0]) as direct:
        targets.append(direct)
        contexts = [gateway_target("127.0.0.1", pairs[mode][1], clients) for mode in MODES]
        for mode, context in zip(MODES, contexts, strict=True):
            target = await context.__aenter__()
            target.name = f"tracing {mode}"
            targets.append(target)
        try:
            for target in targets:
                await drive(Run("warmup"), target.create, target.get, clients, warmup)
            freeze_startup_heap()  # the load generator's own GC pauses are not the services'
            runs = [Run(target.name) for target in targets]
            pids = [pairs["off"][2][:1], *(pairs[mode][2] for mode in MODES)]
            cpu = [[0.0] * len(p) for p in pids]
            per_round: list[list[float]] = [[] for _ in runs]
            for _ in range(rounds):
                for index in random.sample(range(len(targets)), len(targets)):
                    run, requests, took = runs[index], runs[index].requests, runs[index].seconds
                    before = cpu_seconds(pids[index])
                    await drive(run, targets[index].create, targets[index].get, clients, seconds / rounds)
                    for process, (after, then) in enumerate(
                        zip(cpu_seconds(pids[index]), before, strict=True)
                    ):
                        cpu[index][process] += after - then
                    per_round[index].append((run.requests - requests) / (run.seconds - took))
            for run, used in zip(runs, cpu, strict=True):
                run.cpu_us = [1e6 * u / max(run.requests, 1) for u in used]  # type: ignore[attr-defined]
            await asyncio.sleep(6)  # the batch processor's schedule delay: the last exports land
            dropped = await dropped_spans(pairs["on"][1])
        finally:
            for context in contexts:
                await context.__aexit__(None, None, None)
    return runs, per_round, dropped


def paired_ratio(per_round: list[list[float]], index: int, baseline: int) -> float:
    """Median over rounds of a target's requests/s over the baseline's in the same round:
    load from elsewhere on the machine drifts between rounds, much less within one."""
    return statistics.median(a / b for a, b in zip(per_round[index], per_round[baseline], strict=True))


def report(
    runs: list[Run],
    per_round: list[list[float]],
    dropped: float,
    counts: dict,
    clients: int,
    seconds: float,
    rounds: int,
) -> int:
    _, off, _, on = runs
    print(
        f"sessions benchmark, tracing: {clients} clients, {seconds:g} s per target in {rounds} "
        "rounds (targets in random order each round), create + get per iteration"
    )
    for run in runs:
        print(run.line().replace(run.name, f"{run.name:<22}", 1))
    print("CPU per request:")
    for run in runs:
        parts = dict(zip(("session", "gateway"), run.cpu_us, strict=False))  # type: ignore[attr-defined]
        print(
            f"  {run.name:<22} "
            + ", ".join(f"{name} {us:.0f} µs" for name, us in parts.items())
            + f" (total {sum(parts.values()):.0f} µs)"
        )
    ratio_out, ratio_on = paired_ratio(per_round, 2, 1), paired_ratio(per_round, 3, 1)
    print(f"gateway tracing off / direct gRPC {paired_ratio(per_round, 1, 0):.2f} (median of paired rounds)")
    print(f"tracing sampled out / off {ratio_out:.2f}")
    print(
        f"tracing on (100 % sampling) / off {ratio_on:.2f} (target >= {TRACING_RATIO_TARGET}: the drop is "
        f"{100 * (1 - ratio_on):.1f} %; whole-run totals {on.rps / off.rps if off.rps else 0:.2f})"
    )
    expected = 2 * on.requests  # the gateway's server span, the session's
    print(
        f"spans exported to the sink: {counts['spans']} in {counts['requests']} requests "
        f"(>= {expected} expected from the traced target alone), dropped {dropped:.0f}"
    )
    met = ratio_on >= TRACING_RATIO_TARGET
    print(f"target {'met' if met else 'NOT met'}")
    return 0 if all(run.errors == 0 for run in runs) and counts["spans"] >= expected else 1
