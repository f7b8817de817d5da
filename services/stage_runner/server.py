"""Wiring of the StageRunnerService process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from libs.common.backpressure import ResourceGate
from libs.common.clients import MeshClients
from libs.common.grpc_server import ServiceWiring, run_service
from libs.common.metrics import JOBS, QUEUE_LENGTH
from libs.common.settings import MeshSettings
from services.stage_runner.backends.base import STAGE_ORDER
from services.stage_runner.backends.builtin import builtin_backends
from services.stage_runner.backends.external import ExternalBackend
from services.stage_runner.backends.script import UserScriptBackend
from services.stage_runner.backends.simulation import SimulationBackend
from services.stage_runner.capabilities import BackendRegistry, initial_mode
from services.stage_runner.config import StageRunnerSettings, load_backends_file
from services.stage_runner.cost_model import CostModel
from services.stage_runner.detection import detect
from services.stage_runner.execution import JobRunner
from services.stage_runner.jobs import JobManager
from services.stage_runner.local_queue import LocalJobQueue
from services.stage_runner.media.config import MediaSettings
from services.stage_runner.media.speech_engine import SpeechEngine
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.queue import JobQueue
from services.stage_runner.redis_jobs import RedisJobQueue
from services.stage_runner.redis_wiring import redis_job_stream
from services.stage_runner.scripts import GeminiScriptBackend, ScriptService
from services.stage_runner.servicer import StageRunnerService
from services.stage_runner.session_link import SessionLink
from services.stage_runner.stage_slots import StageSlots
from services.stage_runner.store import open_store
from services.stage_runner.webhooks import WebhookSender
from vidsynth.v1 import stage_runner_pb2, stage_runner_pb2_grpc

SERVICES = [stage_runner_pb2.DESCRIPTOR.services_by_name["StageRunnerService"]]


@dataclass(kw_only=True)
class StageRunnerWiring(ServiceWiring):
    """The service's wiring and the domain objects tests and benchmarks reach into."""

    jobs: JobManager
    registry: BackendRegistry


async def build(
    settings: MeshSettings,
    runner_settings: StageRunnerSettings | None = None,
    media_settings: MediaSettings | None = None,
) -> StageRunnerWiring:
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

    slots = StageSlots.from_settings(runner_settings)
    runner = JobRunner(
        runner_settings,
        store=store,
        registry=registry,
        cost_model=cost_model,
        slots=slots,
        sessions=sessions,
        publisher=publisher,
        webhooks=webhooks,
        sessions_dir=settings.sessions_dir,
        words_per_minute=media_settings.media_words_per_minute,
    )
    # With Redis, jobs queue on a stream shared by every replica (redis_jobs.py).
    queue: JobQueue
    if settings.redis_url:
        queue = RedisJobQueue(
            runner_settings,
            runner=runner,
            store=store,
            stream=redis_job_stream(store),
            publisher=publisher,
            registry=registry,
            configured_mode=settings.processing_mode,
        )
    else:
        queue = LocalJobQueue(runner_settings, runner=runner, store=store)
    jobs = JobManager(
        runner_settings,
        store=store,
        registry=registry,
        cost_model=cost_model,
        sessions=sessions,
        queue=queue,
        words_per_minute=media_settings.media_words_per_minute,
        admission_checks=[ResourceGate(clients).check_new_job],
    )
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

    return StageRunnerWiring(
        services=SERVICES,
        register=lambda server: stage_runner_pb2_grpc.add_StageRunnerServiceServicer_to_server(
            servicer, server
        ),
        on_started=on_started,
        on_draining=on_draining,
        on_closing=on_closing,
        jobs=jobs,
        registry=registry,
    )


def observe_queue(jobs: JobManager) -> None:
    """Queue gauges read at scrape time (this replica's view of the queue)."""
    JOBS.labels("queued").set_function(lambda: jobs.queue.waiting_count)
    JOBS.labels("running").set_function(lambda: jobs.queue.running_count)
    QUEUE_LENGTH.set_function(lambda: jobs.queue.waiting_count)


def main() -> None:
    run_service("stage_runner", build)
