"""Wiring of the StageRunnerService process."""

from __future__ import annotations

import asyncio

from libs.common.backpressure import ResourceGate
from libs.common.clients import MeshClients
from libs.common.grpc_server import ServiceWiring, run_service
from libs.common.metrics import JOBS, QUEUE_LENGTH
from libs.common.settings import MeshSettings
from services.stage_runner.backends.base import STAGE_ORDER, stage_from_name
from services.stage_runner.backends.builtin import builtin_backends
from services.stage_runner.backends.external import ExternalBackend
from services.stage_runner.backends.script import UserScriptBackend
from services.stage_runner.backends.simulation import SimulationBackend
from services.stage_runner.capabilities import BackendRegistry, initial_mode
from services.stage_runner.config import STAGE_NAMES, StageRunnerSettings, load_backends_file
from services.stage_runner.cost_model import CostModel
from services.stage_runner.detection import detect
from services.stage_runner.execution import JobRunner
from services.stage_runner.jobs import JobManager
from services.stage_runner.media.config import MediaSettings
from services.stage_runner.media.speech_engine import SpeechEngine
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.redis_jobs import RedisJobManager
from services.stage_runner.redis_wiring import redis_job_options
from services.stage_runner.scripts import GeminiScriptBackend, ScriptService
from services.stage_runner.servicer import StageRunnerService
from services.stage_runner.session_link import SessionLink
from services.stage_runner.store import open_store
from services.stage_runner.webhooks import WebhookSender
from vidsynth.v1 import stage_runner_pb2, stage_runner_pb2_grpc

SERVICES = [stage_runner_pb2.DESCRIPTOR.services_by_name["StageRunnerService"]]


async def build(
    settings: MeshSettings,
    runner_settings: StageRunnerSettings | None = None,
    media_settings: MediaSettings | None = None,
) -> ServiceWiring:
    runner_settings = runner_settings or StageRunnerSettings()
    media_settings = media_settings or MediaSettings()
    store = await open_store(settings, runner_settings)
    backends_file = await asyncio.to_thread(load_backends_file, runner_settings.backends_file)
    scripts = ScriptService(media_settings)

    async def redetect():
        return await detect(backends_file.conda_executable, scripts.available()[0])

    detection = await redetect()
    # The Piper worker, started on the first built-in voice stage and kept for the next jobs.
    speech = SpeechEngine()
    backends = [
        UserScriptBackend(),
        GeminiScriptBackend(scripts),
        *[ExternalBackend(c, detection, backends_file.conda_executable) for c in backends_file.backends],
        *builtin_backends(detection, media_settings, speech),
        *[
            SimulationBackend(
                stage,
                runner_settings.stage_runner_simulation_seconds,
                media_settings.media_words_per_minute,
            )
            for stage in STAGE_ORDER
        ],
    ]
    mode = await initial_mode(store, settings.processing_mode)
    registry = BackendRegistry(backends, detection, redetect, mode)
    cost_model = CostModel(store, runner_settings.stage_runner_simulation_seconds)
    await cost_model.load()
    clients = MeshClients(settings)
    publisher = ProgressPublisher(clients, runner_settings.stage_runner_progress_buffer_events)
    webhook_secret = runner_settings.stage_runner_webhook_secret.get_secret_value()
    webhooks = WebhookSender(
        webhook_secret,
        runner_settings.stage_runner_webhook_max_attempts,
        runner_settings.stage_runner_webhook_backoff_seconds,
        runner_settings.stage_runner_webhook_timeout_seconds,
    )
    sessions = SessionLink(clients, settings.sessions_dir)

    def make_runner(live, queue) -> JobRunner:
        return JobRunner(
            live=live,
            queue=queue,
            store=store,
            registry=registry,
            cost_model=cost_model,
            sessions=sessions,
            publisher=publisher,
            webhooks=webhooks,
            sessions_dir=settings.sessions_dir,
            words_per_minute=media_settings.media_words_per_minute,
            stage_timeout_seconds=runner_settings.stage_runner_stage_timeout_seconds,
        )

    # With Redis, jobs queue on a stream shared by every replica (redis_jobs.py).
    shared_queue = (
        redis_job_options(settings, runner_settings, store, publisher) if settings.redis_url else {}
    )
    jobs = (RedisJobManager if shared_queue else JobManager)(
        **shared_queue,
        store=store,
        registry=registry,
        cost_model=cost_model,
        sessions=sessions,
        runner_factory=make_runner,
        max_running=runner_settings.stage_runner_max_running_jobs,
        max_waiting=runner_settings.stage_runner_max_queued_jobs,
        max_running_per_user=runner_settings.stage_runner_max_running_jobs_per_user,
        max_waiting_per_user=runner_settings.stage_runner_max_queued_jobs_per_user,
        stage_limits={
            stage_from_name(n): v for n, v in runner_settings.stage_limits.items() if n in STAGE_NAMES
        },
        gpu_slots=runner_settings.stage_runner_gpu_slots,
        max_script_chars=runner_settings.stage_runner_max_script_chars,
        words_per_minute=media_settings.media_words_per_minute,
        webhook_hosts=runner_settings.webhook_hosts,
        webhook_secret_set=bool(webhook_secret),
    )
    jobs.admission_checks.append(ResourceGate(clients).check_new_job)
    observe_queue(jobs)
    servicer = StageRunnerService(
        jobs, registry, store, scripts, settings.processing_mode, settings.sessions_dir
    )

    async def on_started() -> None:
        publisher.start()
        await jobs.resume()

    async def on_draining() -> None:
        # No job starts from here on; running ones are interrupted and stay resumable.
        await jobs.stop()

    async def on_closing() -> None:
        await speech.close()
        await publisher.stop(flush_timeout=2.0)
        await webhooks.close()
        await clients.close()
        await store.close()

    wiring = ServiceWiring(
        services=SERVICES,
        register=lambda server: stage_runner_pb2_grpc.add_StageRunnerServiceServicer_to_server(
            servicer, server
        ),
        on_started=on_started,
        on_draining=on_draining,
        on_closing=on_closing,
    )
    # Tests and the lead's back-pressure wiring reach the domain objects through here.
    wiring.jobs = jobs  # type: ignore[attr-defined]
    wiring.registry = registry  # type: ignore[attr-defined]
    return wiring


def observe_queue(jobs: JobManager) -> None:
    """Queue gauges read at scrape time (this replica's view of the queue)."""
    JOBS.labels("queued").set_function(lambda: len(jobs.queue.waiting))
    JOBS.labels("running").set_function(lambda: len(jobs.queue.running))
    QUEUE_LENGTH.set_function(lambda: len(jobs.queue.waiting))


def main() -> None:
    run_service("stage_runner", build)
