"""Exit 0 when a gRPC service reports SERVING: `python -m libs.common.healthcheck HOST:PORT [SERVICE]`.

Used by container healthchecks, which cannot speak gRPC themselves. With mesh TLS on
(VIDSYNTH_MESH_TLS), SERVICE names the service checked: the check presents that service's
certificate and requires the server to prove that identity.
"""

from __future__ import annotations

import sys

import grpc
import pydantic
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common import mesh_tls


def _channel(address: str, tls: mesh_tls.MeshTls | None, service: str) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, tls.channel_credentials(), options=tls.channel_options(service))


def is_serving(
    address: str, timeout: float = 2.0, tls: mesh_tls.MeshTls | None = None, service: str = ""
) -> bool:
    with _channel(address, tls, service) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.stderr.write("usage: python -m libs.common.healthcheck HOST:PORT [SERVICE]\n")
        return 1
    service = argv[1] if len(argv) == 2 else ""
    try:
        on = mesh_tls.MeshTlsSettings().mesh_tls
    except pydantic.ValidationError as error:
        sys.stderr.write(f"cannot check: {mesh_tls.settings_error(error)}\n")
        return 1
    if on:
        if service not in mesh_tls.SERVER_IDENTITIES:
            sys.stderr.write(
                f"with mesh TLS, name the service checked: one of {', '.join(mesh_tls.SERVER_IDENTITIES)}\n"
            )
            return 1
        tls = mesh_tls.configure_process(service)
        return 0 if is_serving(argv[0], tls=tls, service=service) else 1
    return 0 if is_serving(argv[0]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
