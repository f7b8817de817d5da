"""A Job as plain JSON (enum names in lower case, as the HTTP API and webhooks spell them)."""

from __future__ import annotations

from google.protobuf import json_format

from libs.common.enums import enum_label
from libs.common.rpc_status import error_from_status_proto
from vidsynth.v1 import common_pb2, stage_runner_pb2


def _timestamp(message, field: str) -> str | None:
    if not message.HasField(field):
        return None
    return getattr(message, field).ToJsonString()


def error_code_of(job: stage_runner_pb2.Job) -> str:
    error = error_from_status_proto(job.error)
    return error.code if error is not None else ""


def spec_to_dict(spec: stage_runner_pb2.JobSpec) -> dict:
    return json_format.MessageToDict(spec, preserving_proto_field_name=True)


def job_to_dict(job: stage_runner_pb2.Job) -> dict:
    body: dict = {
        "job_id": job.job_id,
        "session_id": job.session_id,
        "state": enum_label(common_pb2.JobState, job.state),
        "done": job.done,
        "mode": enum_label(common_pb2.ProcessingMode, job.mode),
        "overall_percent": round(job.overall_percent, 2),
        "queue_position": job.queue_position,
        "eta_seconds": round(job.eta_seconds, 2),
        "spec": spec_to_dict(job.spec),
        "stages": [
            {
                "stage": enum_label(common_pb2.Stage, s.stage),
                "status": enum_label(common_pb2.StageStatus, s.status),
                "backend": s.backend,
                "percent": round(s.percent, 2),
                "estimated_seconds": round(s.estimated_seconds, 2),
                "start_time": _timestamp(s, "start_time"),
                "end_time": _timestamp(s, "end_time"),
                **({"error": {"code": s.error.code, "message": s.error.message}} if s.error.code else {}),
            }
            for s in job.stages
        ],
        "outputs": [
            {"name": o.name, "content_type": o.content_type, "size_bytes": o.size_bytes, "sha256": o.sha256}
            for o in job.outputs
        ],
        "create_time": _timestamp(job, "create_time"),
        "start_time": _timestamp(job, "start_time"),
        "end_time": _timestamp(job, "end_time"),
    }
    if job.HasField("error"):
        body["error"] = {"code": error_code_of(job), "message": job.error.message}
    return body


def capabilities_to_dict(caps: stage_runner_pb2.Capabilities) -> dict:
    return {
        "mode": enum_label(common_pb2.ProcessingMode, caps.mode),
        "production_ready": caps.production_ready,
        "gpu_available": caps.gpu_available,
        "gpu_name": caps.gpu_name,
        "detect_time": _timestamp(caps, "detect_time"),
        "missing": list(caps.missing),
        "stages": [
            {
                "stage": enum_label(common_pb2.Stage, s.stage),
                "selected_backend": s.selected_backend,
                "production_available": s.production_available,
            }
            for s in caps.stages
        ],
        "backends": [
            {
                "name": b.name,
                "stage": enum_label(common_pb2.Stage, b.stage),
                "kind": enum_label(stage_runner_pb2.BackendKind, b.kind),
                "available": b.available,
                "reason": b.reason,
                "needs_gpu": b.needs_gpu,
            }
            for b in caps.backends
        ],
    }
