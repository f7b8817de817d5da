"""The cleanup service as its own process (`python -m services.cleanup`): it serves,
exposes its metrics page, keeps its task history across a restart, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.cleanup.conftest import DAY, write_file
from tests.support.identities import mesh_env, user_metadata
from tests.support.ports import free_port_block
from tests.support.service_process import start_service_process, wait_serving
from vidsynth.v1 import cleanup_pb2, cleanup_pb2_grpc

START_TIMEOUT_SECONDS = 30.0


async def start_process(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await start_service_process("cleanup", env)


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=START_TIMEOUT_SECONDS)


def metric_value(page: str, name: str, **labels) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_process_serves_metrics_and_remembers_its_runs(tmp_path):
    grpc_port, metrics_port = free_port_block(), free_port_block()
    data_dir = tmp_path / "var"
    write_file(data_dir / "quarantine" / "qua_old", 777, age_seconds=60 * DAY)
    env = {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_DATA_DIR": str(data_dir),
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
        "VIDSYNTH_METRICS_PORT": str(metrics_port),
    }
    address = f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS['cleanup']}"
    process = await start_process(env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_serving(channel, process)
            stub = cleanup_pb2_grpc.CleanupServiceStub(channel)
            await stub.GetResourceHealth(
                cleanup_pb2.GetResourceHealthRequest(), metadata=user_metadata("alice")
            )
            ran = await stub.RunCleanup(
                cleanup_pb2.RunCleanupRequest(task_name="quarantine"), metadata=user_metadata("root")
            )
            assert ran.bytes_freed == 777
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://127.0.0.1:{metrics_port + 4}/metrics")).text
        assert metric_value(page, "vidsynth_grpc_requests_total", method="GetResourceHealth", code="OK") == 1
        assert metric_value(page, "vidsynth_cleanup_bytes_freed_total", task="quarantine") == 777
        assert await stop(process) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    process = await start_process(env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_serving(channel, process)
            listing = await cleanup_pb2_grpc.CleanupServiceStub(channel).ListCleanupTasks(
                cleanup_pb2.ListCleanupTasksRequest(), metadata=user_metadata("root")
            )
        task = next(t for t in listing.tasks if t.name == "quarantine")
        assert task.last_result.bytes_freed == 777
        assert list(task.last_result.removed) == ["quarantine/qua_old"]
        assert task.next_run_time.seconds - task.last_run_time.seconds == 3600
        assert await stop(process) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
