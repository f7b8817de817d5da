"""A whole mesh (`vidsynth up`, real processes, clamd) exporting its spans to an
in-test OTLP/HTTP receiver, with a webhook receiver the stage runner may deliver to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.mesh_process import MeshProcess
from tests.support.otlp_receiver import OtlpReceiver

WEBHOOK_SECRET = "webhook-secret-for-tracing-tests"


@dataclass
class WebhookReceiver:
    deliveries: list[dict[str, str]] = field(default_factory=list)
    port: int = 0


@dataclass
class TracedMesh:
    mesh: MeshProcess
    receiver: OtlpReceiver
    webhooks: WebhookReceiver

    @property
    def url(self) -> str:
        return self.mesh.url


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    received = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.deliveries.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def traced_mesh(tmp_path_factory, webhook_receiver) -> Iterator[TracedMesh]:
    with OtlpReceiver() as receiver:
        mesh = MeshProcess(
            tmp_path_factory.mktemp("traced") / "var",
            extra_env={
                **receiver.env(),
                # Every process names itself, whatever the environment says.
                "OTEL_SERVICE_NAME": "one-name-for-all",
                "VIDSYNTH_PROCESSING_MODE": "simulation",
                "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "0.3",
                "VIDSYNTH_STAGE_RUNNER_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "VIDSYNTH_STAGE_RUNNER_WEBHOOK_ALLOWED_HOSTS": f"127.0.0.1:{webhook_receiver.port}",
            },
        )
        try:
            mesh.wait_up()
            yield TracedMesh(mesh, receiver, webhook_receiver)
        finally:
            mesh.stop()
