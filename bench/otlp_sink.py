"""An OTLP/HTTP trace sink for benchmarks: accepts every export, counts requests and
spans, keeps nothing. Runs as its own process, as a collector would, so decoding the
exports costs the measured processes nothing but the machine's share.

    python -m bench.otlp_sink PORT      # prints {"requests": n, "spans": m} on SIGTERM
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ANSWER = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0
        self.lock = threading.Lock()


def serve(port: int) -> None:
    counts = Counts()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's requests.Session expects

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            with counts.lock:
                counts.requests += 1
                counts.spans += spans
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    print(json.dumps({"requests": counts.requests, "spans": counts.spans}), flush=True)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
