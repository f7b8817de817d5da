"""A job whose store (Redis, in the scaled set-up) goes away while it runs fails with
SERVICE_UNAVAILABLE: an outage the client retries, never blamed on a stage."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from libs.common.rpc_status import error_from_status_proto
from services.stage_runner.store import SqliteJobStore
from vidsynth.v1 import common_pb2


async def test_a_job_whose_store_is_lost_mid_run_fails_service_unavailable(start_mesh, monkeypatch):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    real_update = SqliteJobStore.update
    lost: list[str] = []

    async def update(store, job):
        if not lost and job.state == common_pb2.JOB_STATE_RUNNING:
            lost.append(job.job_id)  # the run's first write: the store is gone for it
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        await real_update(store, job)

    monkeypatch.setattr(SqliteJobStore, "update", update)
    job = await mesh.start(session_id)
    failed = await mesh.wait_done(job.job_id)
    assert lost == [job.job_id]
    assert failed.state == common_pb2.JOB_STATE_FAILED
    error = error_from_status_proto(failed.error)
    assert error is not None and error.code == "SERVICE_UNAVAILABLE", failed.error
    assert not [s for s in failed.stages if s.error.code == "STAGE_FAILED"]
