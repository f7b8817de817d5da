"""Mesh messages as the HTTP API shows them (services/gateway/api_models.py), reused by every
route that answers one and by the CLI's --json, so both spell everything the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message

from libs.common.asset_kinds import KIND_NAMES
from libs.common.enums import enum_label
from libs.common.rpc_status import error_from_status_proto
from services.gateway import api_models as m
from services.gateway.api_enums import (
    AssetKind,
    BackendKind,
    JobState,
    ProcessingMode,
    ScanPolicy,
    SessionState,
    StageName,
    StageStatus,
)
from vidsynth.v1 import common_pb2, session_pb2, stage_runner_pb2, validator_pb2

ASSET_KINDS: dict[int, AssetKind] = {value: AssetKind(name) for value, name in KIND_NAMES.items()}
ASSET_KIND_VALUES: dict[AssetKind, int] = {name: value for value, name in ASSET_KINDS.items()}


def timestamp(message: Message, field: str) -> datetime | None:
    """An RFC 3339 instant in UTC, or None when the field is unset."""
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime(tzinfo=UTC)


def _error(summary: common_pb2.ErrorSummary) -> m.ErrorSummary | None:
    return m.ErrorSummary(code=summary.code, message=summary.message) if summary.code else None


def asset_view(asset: common_pb2.Asset) -> m.Asset:
    report = asset.report
    has_report = asset.HasField("report")
    return m.Asset(
        asset_id=asset.asset_id,
        kind=ASSET_KINDS[asset.kind],
        content_type=asset.content_type,
        sha256=asset.sha256,
        size_bytes=asset.size_bytes,
        create_time=timestamp(asset, "create_time"),
        width=report.width or None,
        height=report.height or None,
        duration_seconds=report.duration_seconds or None,
        warnings=list(report.warnings) if has_report else [],
    )


def session_view(session: session_pb2.Session) -> m.Session:
    return m.Session(
        session_id=session.session_id,
        user_id=session.user_id,
        state=SessionState(enum_label(session_pb2.SessionState, session.state)),
        display_name=session.display_name,
        assets=[asset_view(asset) for asset in session.assets],
        active_job_id=session.active_job_id or None,
        create_time=timestamp(session, "create_time"),
        update_time=timestamp(session, "update_time"),
        last_active_time=timestamp(session, "last_active_time"),
        expire_time=timestamp(session, "expire_time"),
    )


def active_session_view(active: session_pb2.ActiveSession) -> m.ActiveSession:
    return m.ActiveSession(
        session=session_view(active.session),
        age_seconds=round(active.age.ToMicroseconds() / 1e6, 3),
        disk_used_bytes=active.disk_used_bytes,
    )


def ended_session_view(ended: session_pb2.EndSessionResponse) -> m.EndedSession:
    return m.EndedSession(
        session_id=ended.session_id,
        user_id=ended.user_id,
        cancelled_job_id=ended.cancelled_job_id or None,
        bytes_freed=ended.bytes_freed,
        events_deleted=ended.events_deleted,
    )


def report_view(report: common_pb2.ValidationReport) -> m.ValidationReport:
    box, scan = report.face_box, report.scan
    return m.ValidationReport(
        accepted=report.accepted,
        kind=ASSET_KINDS[report.kind],
        detected_type=report.detected_type,
        sha256=report.sha256,
        size_bytes=report.size_bytes,
        width=report.width or None,
        height=report.height or None,
        duration_seconds=report.duration_seconds or None,
        sample_rate=report.sample_rate or None,
        channels=report.channels or None,
        face_box=m.FaceBox(x=box.x, y=box.y, width=box.width, height=box.height)
        if report.HasField("face_box")
        else None,
        scan=m.ScanResult(
            engine=scan.engine,
            signature_db=scan.signature_db,
            scanned=scan.scanned,
            clean=scan.clean,
            signature=scan.signature,
        )
        if report.HasField("scan")
        else None,
        checks=[m.CheckResult(name=c.name, passed=c.passed, detail=c.detail) for c in report.checks],
        warnings=list(report.warnings),
        error=_error(report.error),
    )


def upload_view(response: validator_pb2.ValidateUploadResponse) -> m.UploadResult:
    return m.UploadResult(asset=asset_view(response.asset), report=report_view(response.report))


def upload_policy_view(policy: validator_pb2.UploadPolicy) -> m.UploadPolicy:
    return m.UploadPolicy(
        kinds=[
            m.KindPolicy(
                kind=ASSET_KINDS[k.kind],
                max_bytes=k.max_bytes,
                allowed_content_types=list(k.allowed_content_types),
                allowed_extensions=list(k.allowed_extensions),
                min_width=k.min_width,
                min_height=k.min_height,
                max_width=k.max_width,
                max_height=k.max_height,
                max_pixels=k.max_pixels,
                min_duration_seconds=k.min_duration_seconds,
                max_duration_seconds=k.max_duration_seconds,
            )
            for k in policy.kinds
            if k.kind in ASSET_KINDS
        ],
        scan_policy=ScanPolicy(enum_label(validator_pb2.ScanPolicy, policy.scan_policy))
        if policy.scan_policy
        else None,
        scanner_available=policy.scanner_available,
        signature_db=policy.signature_db or None,
        chunk_size_bytes=policy.chunk_size_bytes,
    )


def _stage(value: int) -> StageName:
    return StageName(enum_label(common_pb2.Stage, value))


def spec_view(spec: stage_runner_pb2.JobSpec) -> m.JobSpec:
    prompt, options = spec.script_prompt, spec.options
    which = spec.WhichOneof("script")
    return m.JobSpec(
        script_text=spec.script_text if which == "script_text" else None,
        script_prompt=m.ScriptPrompt(
            topic=prompt.topic,
            duration_minutes=prompt.duration_minutes,
            tone=prompt.tone,
            emotion=prompt.emotion,
            audience=prompt.audience,
            content_type=prompt.content_type,
        )
        if which == "script_prompt"
        else None,
        emotion=spec.emotion,
        tone=spec.tone,
        options=m.JobOptions(
            enhance=options.enhance,
            upscale_factor=options.upscale_factor,
            size=options.size,
            fps=options.fps,
            burn_captions=options.burn_captions,
        ),
        webhook_url=spec.webhook_url,
    )


def stage_state_view(state: stage_runner_pb2.StageState) -> m.StageState:
    return m.StageState(
        stage=_stage(state.stage),
        status=StageStatus(enum_label(common_pb2.StageStatus, state.status)),
        backend=state.backend,
        percent=round(state.percent, 2),
        estimated_seconds=round(state.estimated_seconds, 2),
        start_time=timestamp(state, "start_time"),
        end_time=timestamp(state, "end_time"),
        error=_error(state.error),
    )


def job_error(job: stage_runner_pb2.Job) -> m.ErrorSummary | None:
    if not job.HasField("error"):
        return None
    error = error_from_status_proto(job.error)
    return m.ErrorSummary(code=error.code if error is not None else "", message=job.error.message)


def job_view(job: stage_runner_pb2.Job) -> m.Job:
    return m.Job(
        job_id=job.job_id,
        session_id=job.session_id,
        state=JobState(enum_label(common_pb2.JobState, job.state)),
        done=job.done,
        mode=ProcessingMode(enum_label(common_pb2.ProcessingMode, job.mode)),
        overall_percent=round(job.overall_percent, 2),
        queue_position=job.queue_position,
        eta_seconds=round(job.eta_seconds, 2),
        spec=spec_view(job.spec),
        stages=[stage_state_view(s) for s in job.stages],
        outputs=[
            m.JobOutput(name=o.name, content_type=o.content_type, size_bytes=o.size_bytes, sha256=o.sha256)
            for o in job.outputs
        ],
        create_time=timestamp(job, "create_time"),
        start_time=timestamp(job, "start_time"),
        end_time=timestamp(job, "end_time"),
        error=job_error(job),
    )


def estimate_view(estimate: stage_runner_pb2.JobEstimate) -> m.Estimate:
    return m.Estimate(
        total_seconds=round(estimate.total_seconds, 2),
        speech_seconds=round(estimate.speech_seconds, 2),
        outputs=list(estimate.outputs),
        stages=[
            m.StageEstimate(stage=_stage(s.stage), backend=s.backend, seconds=round(s.seconds, 2))
            for s in estimate.stages
        ],
    )


def capabilities_view(caps: stage_runner_pb2.Capabilities) -> m.Capabilities:
    return m.Capabilities(
        mode=ProcessingMode(enum_label(common_pb2.ProcessingMode, caps.mode)),
        production_ready=caps.production_ready,
        gpu_available=caps.gpu_available,
        gpu_name=caps.gpu_name,
        detect_time=timestamp(caps, "detect_time"),
        missing=list(caps.missing),
        stages=[
            m.StageCapability(
                stage=_stage(s.stage),
                selected_backend=s.selected_backend,
                production_available=s.production_available,
            )
            for s in caps.stages
        ],
        backends=[
            m.Backend(
                name=b.name,
                stage=_stage(b.stage),
                kind=BackendKind(enum_label(stage_runner_pb2.BackendKind, b.kind)),
                available=b.available,
                reason=b.reason,
                needs_gpu=b.needs_gpu,
            )
            for b in caps.backends
        ],
    )


def script_view(response: stage_runner_pb2.GenerateScriptResponse) -> m.GeneratedScript:
    return m.GeneratedScript(
        text=response.text,
        model=response.model,
        word_count=response.word_count,
        estimated_seconds=round(response.estimated_seconds, 2),
    )
