"""Uploads through the gateway vs the bare cost of checking the same bytes, same run.

Starts a real clamd (the project's test signatures unless the official database is
installed), SessionService, ValidatorService and the gateway as separate processes,
as `vidsynth up` would. Streams a 40 MB WAV and an 8 MB JPEG through
`POST /v1/sessions/{id}/assets/{kind}` and compares with the floor: sha256 + libmagic +
clamd INSTREAM of the same bytes, done directly in this process.

    .venv/bin/python -m bench.upload [--rounds 3] [--timings]

`--timings` runs the validator at debug level and prints the median of each phase of
its uploads (services/validator/timings.py), per file.

Target: gateway >= 0.6x the floor's MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import magic
import numpy as np
import uvloop
from PIL import Image

from services.validator.scanner import ClamdScanner
from tests.support.identities import bearer, mesh_env
from tests.support.ports import free_port, free_port_block
from vidsynth.cli.clamd import clamd_command, wait_until_ready

RATIO_TARGET = 0.6
STARTUP_TIMEOUT_SECONDS = 120.0
SEND_CHUNK = 1024 * 1024
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def make_wav(megabytes: int) -> bytes:
    """Speech-like stereo 44.1 kHz audio (the voice sample, looped), about `megabytes` MB."""
    rate, seconds = 44100, megabytes * 1024 * 1024 / (44100 * 4)
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t))
    stereo = np.stack([tone, tone * 0.8], axis=1)
    pcm = (stereo * 32767).astype("<i2").tobytes()
    header = io.BytesIO()
    import wave

    with wave.open(header, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return header.getvalue()


JPEG_SIDE = 3700


def make_jpeg(megabytes: int) -> bytes:
    """The sample portrait enlarged with light grain, saved at rising quality until the
    JPEG is about `megabytes` MB (still one face: the grain is too fine to fool the detector)."""
    base = (
        Image.open(SAMPLES / "portrait.jpg")
        .convert("RGB")
        .resize((JPEG_SIDE, JPEG_SIDE), Image.Resampling.LANCZOS)
    )
    pixels = np.asarray(base).astype(np.int16) + np.random.default_rng(1).normal(
        0, 5, (JPEG_SIDE, JPEG_SIDE, 3)
    )
    grainy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    for quality in (90, 92, 94, 96, 98, 99):
        out = io.BytesIO()
        grainy.save(out, format="JPEG", quality=quality)
        if out.tell() >= megabytes * 1024 * 1024:
            break
    return out.getvalue()


def floor_seconds(data: bytes, scanner: ClamdScanner) -> float:
    """sha256 + libmagic + clamd INSTREAM of `data`: the least any validator must do."""
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    magic.Magic(mime=True).from_buffer(data[: 1024 * 1024])
    verdict = scanner.scan_chunks(data[i : i + SEND_CHUNK] for i in range(0, len(data), SEND_CHUNK))
    assert verdict.clean, verdict
    return time.perf_counter() - started


async def upload_seconds(client: httpx.AsyncClient, kind: str, name: str, data: bytes) -> float:
    session = (await client.post("/v1/sessions", json={})).json()
    session_id = session["session_id"]

    async def body():
        for i in range(0, len(data), SEND_CHUNK):
            yield data[i : i + SEND_CHUNK]

    started = time.perf_counter()
    response = await client.post(
        f"/v1/sessions/{session_id}/assets/{kind}",
        params={"filename": name},
        content=body(),
        headers={"Content-Length": str(len(data)), "Content-Type": "application/octet-stream"},
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text[:300]}")
    await client.delete(f"/v1/sessions/{session_id}")
    return elapsed


async def wait_http(url: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a service exited during startup")
            try:
                if (await client.get(f"{url}/readyz")).status_code in (200, 503):
                    response = await client.get(f"{url}/readyz")
                    services = response.json().get("services", {})
                    if all(services.get(name) == "serving" for name in ("session", "validator", "cleanup")):
                        return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("mesh did not become ready")


PROCESS_NAMES = ("clamd", "session", "validator", "cleanup", "gateway")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_phase_timings(log_path: Path, sizes: dict[int, str]) -> None:
    """Median milliseconds of each validator phase, per uploaded file."""
    phases: dict[str, dict[str, list[float]]] = {}
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") != "upload.timings" or entry.get("size") not in sizes:
            continue
        per_phase = phases.setdefault(sizes[entry["size"]], {})
        for key, value in {"total": entry["total_ms"], **entry["phases_ms"]}.items():
            per_phase.setdefault(key, []).append(value)
    for name, per_phase in phases.items():
        cells = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in per_phase.items())
        print(f"  validator phases of {name} (median ms): {cells}")


async def main(rounds: int, timings: bool) -> int:
    wav, jpeg = make_wav(40), make_jpeg(8)
    files = [("voice", "voice.wav", wav), ("face", "portrait.jpg", jpeg)]
    total_mb = sum(len(d) for *_, d in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as tmp:
        validator_log = Path(tmp) / "validator.log"
        data_dir = Path(tmp) / "var"
        argv, address, db_kind = clamd_command(data_dir, tcp_port=free_port())
        processes = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            if not await wait_until_ready(address, STARTUP_TIMEOUT_SECONDS):
                raise RuntimeError("clamd did not start")
            http_port = free_port()
            env = {
                **os.environ,
                **mesh_env(),
                "VIDSYNTH_DATA_DIR": str(data_dir),
                "VIDSYNTH_GRPC_PORT": str(free_port_block()),
                "VIDSYNTH_HTTP_PORT": str(http_port),
                "VIDSYNTH_VALIDATOR_CLAMD_ADDRESS": address,
                "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "1000",
                "VIDSYNTH_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            }
            # cleanup too: uploads consult its resource level (back-pressure), as in a real mesh.
            for module in ("services.session", "services.validator", "services.cleanup", "services.gateway"):
                module_env, stderr = env, None
                if timings and module == "services.validator":
                    module_env = {**env, "VIDSYNTH_LOG_LEVEL": "debug"}
                    stderr = validator_log.open("wb")
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module],
                        env=module_env,
                        stdin=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                )
            url = f"http://127.0.0.1:{http_port}"
            await wait_http(url, processes)
            scanner = ClamdScanner(address, timeout=60)
            floor_best = gateway_best = float("inf")
            per_file: dict[str, float] = {}
            per_file_floor: dict[str, float] = {}
            async with httpx.AsyncClient(base_url=url, headers=bearer("alice"), timeout=120) as client:
                await upload_seconds(client, "face", "warmup.jpg", jpeg)  # warm caches and cascades
                cpu_before = [cpu_seconds(p.pid) for p in processes]
                client_before = time.process_time()
                for _ in range(rounds):
                    floor = 0.0
                    for _, name, data in files:
                        seconds = await asyncio.to_thread(floor_seconds, data, scanner)
                        per_file_floor[name] = min(per_file_floor.get(name, seconds), seconds)
                        floor += seconds
                    through = 0.0
                    for kind, name, data in files:
                        seconds = await upload_seconds(client, kind, name, data)
                        per_file[name] = min(per_file.get(name, seconds), seconds)
                        through += seconds
                    floor_best, gateway_best = min(floor_best, floor), min(gateway_best, through)
                if timings:
                    used = [
                        cpu_seconds(p.pid) - before for p, before in zip(processes, cpu_before, strict=True)
                    ]
                    cells = ", ".join(
                        f"{n} {u / rounds:.3f}" for n, u in zip(PROCESS_NAMES, used, strict=True)
                    )
                    client = (time.process_time() - client_before) / rounds
                    print(f"  CPU s per round (floor + uploads): {cells}, bench client {client:.3f}")
        finally:
            for proc in reversed(processes):
                proc.terminate()
            for proc in processes:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if timings:
            print_phase_timings(validator_log, {len(d): n for _, n, d in files})
    floor_rate, gateway_rate = total_mb / floor_best, total_mb / gateway_best
    ratio = gateway_rate / floor_rate
    print(f"signature db: {db_kind}; payload: 40 MB WAV + 8 MB JPEG = {total_mb:.1f} MB; best of {rounds}")
    print(f"floor (sha256 + libmagic + clamd INSTREAM): {floor_best:.3f} s, {floor_rate:.1f} MB/s")
    print(f"gateway upload (all checks + safe copy):   {gateway_best:.3f} s, {gateway_rate:.1f} MB/s")
    for name, seconds in per_file.items():
        size = next(len(d) for _, n, d in files if n == name) / 1e6
        floor_s = per_file_floor[name]
        print(
            f"  {name}: {size:.1f} MB in {seconds:.3f} s, {size / seconds:.1f} MB/s "
            f"(floor {floor_s:.3f} s, ratio {floor_s / seconds:.2f}x)"
        )
    print(
        f"ratio: {ratio:.2f}x the floor (target >= {RATIO_TARGET}x) -> {'OK' if ratio >= RATIO_TARGET else 'BELOW'}"
    )
    return 0 if ratio >= RATIO_TARGET else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timings", action="store_true", help="print the validator's per-phase timings")
    args = parser.parse_args()
    sys.exit(uvloop.run(main(args.rounds, args.timings)))


if __name__ == "__main__":
    cli()
