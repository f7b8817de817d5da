"""The mesh the edge tests share, and a raw HTTP/1.1 client that can stop halfway (the
limits under test are about clients that do). Other client addresses are other loopback
addresses (127.0.0.2, ...), which Linux routes to the same host."""

from __future__ import annotations

import socket

from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.mesh_process import MeshProcess

# Short edge limits, so each shows within seconds (the shipped defaults are checked in
# test_edge_config.py).
HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
CONNECTION_CAP = 6
GATEWAY_BURST = 15
PUBLIC_API = {
    "vidsynth.v1.SessionService",
    "vidsynth.v1.ValidatorService",
    "vidsynth.v1.StageRunnerService",
    "vidsynth.v1.ProgressService",
    "vidsynth.v1.CleanupService",
}
LISTED = PUBLIC_API | {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def backend(mesh: MeshProcess, service: str) -> str:
    return f"127.0.0.1:{mesh.grpc_port + SERVICE_PORT_OFFSETS[service]}"


def raw_connection(mesh: MeshProcess, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", mesh.http_port), timeout=15, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body; status 0 when the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def get(mesh: MeshProcess, source: str, path: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    with raw_connection(mesh, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        return read_response(sock)
