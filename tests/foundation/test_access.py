"""Access levels and retry safety come from the protos' method options: a service whose RPC
declares no access refuses to start, and the mesh clients retry only what the protos call
NO_SIDE_EFFECTS or IDEMPOTENT."""

from __future__ import annotations

import json
import socket

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from libs.common.access import UndeclaredAccessError, access_policy
from libs.common.clients import SERVICE_CONFIG
from libs.common.grpc_server import ServiceWiring, keyring_from_settings, start_wiring
from libs.common.identity import Access
from tests.support.ports import free_port
from vidsynth.v1 import access_pb2

PROBE_PACKAGE = "vidsynth.probe.v1"


def probe_service(declared: dict[str, int | None]):
    """A service descriptor built at run time (its own pool), one method per entry, each
    with the given access option or none."""
    proto = descriptor_pb2.FileDescriptorProto(name="vidsynth/probe/v1/probe.proto", package=PROBE_PACKAGE)
    proto.message_type.add(name="Ping")
    service = proto.service.add(name="ProbeService")
    for name, access in declared.items():
        method = service.method.add(
            name=name, input_type=f".{PROBE_PACKAGE}.Ping", output_type=f".{PROBE_PACKAGE}.Ping"
        )
        if access is not None:
            method.options.Extensions[access_pb2.access] = access
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindServiceByName(f"{PROBE_PACKAGE}.ProbeService")


def test_declared_levels_are_read_from_the_method_options() -> None:
    service = probe_service(
        {"Mine": access_pb2.ACCESS_USER, "Ops": access_pb2.ACCESS_ADMIN, "Mesh": access_pb2.ACCESS_INTERNAL}
    )
    assert access_policy([service]) == {
        f"/{PROBE_PACKAGE}.ProbeService/Mine": Access.USER,
        f"/{PROBE_PACKAGE}.ProbeService/Ops": Access.ADMIN,
        f"/{PROBE_PACKAGE}.ProbeService/Mesh": Access.INTERNAL,
    }


@pytest.mark.parametrize("undeclared", [None, access_pb2.ACCESS_UNSPECIFIED], ids=["absent", "unspecified"])
def test_an_rpc_without_access_names_itself(undeclared) -> None:
    service = probe_service({"Fine": access_pb2.ACCESS_USER, "Forgotten": undeclared})
    with pytest.raises(UndeclaredAccessError) as caught:
        access_policy([service])
    assert f"{PROBE_PACKAGE}.ProbeService.Forgotten" in str(caught.value)
    assert "Fine" not in str(caught.value)


async def test_a_service_with_an_undeclared_rpc_refuses_to_start(mesh_settings) -> None:
    service = probe_service({"Fine": access_pb2.ACCESS_USER, "Forgotten": None})
    registered: list[grpc.aio.Server] = []
    wiring = ServiceWiring(services=[service], register=registered.append)
    port = free_port()
    with pytest.raises(UndeclaredAccessError, match="Forgotten"):
        await start_wiring(wiring, f"127.0.0.1:{port}", keyring_from_settings(mesh_settings))
    assert not registered  # refused before anything was registered or bound
    with socket.create_server(("127.0.0.1", port)):  # the port was never taken
        pass


def _retried_methods() -> set[str]:
    config = json.loads(SERVICE_CONFIG)
    retried = [c for c in config["methodConfig"] if "retryPolicy" in c]
    return {f"{name['service']}/{name['method']}" for c in retried for name in c["name"]}


def test_mesh_clients_retry_read_only_unary_rpcs_only() -> None:
    retried = _retried_methods()
    must = {
        "vidsynth.v1.SessionService/GetSession",
        "vidsynth.v1.SessionService/ListSessions",
        "vidsynth.v1.StageRunnerService/GetJob",
        "vidsynth.v1.StageRunnerService/GetCapabilities",
        "vidsynth.v1.ProgressService/GetProgress",
        "vidsynth.internal.v1.SessionInternalService/BatchGetSessions",
    }
    never = {
        # A probe: the gate and /health carry on without it, so a retry only delays them.
        "vidsynth.v1.CleanupService/GetResourceHealth",
        "vidsynth.v1.SessionService/CreateSession",
        "vidsynth.v1.StageRunnerService/StartJob",
        "vidsynth.v1.StageRunnerService/CancelJob",
        "vidsynth.v1.ValidatorService/ValidateUpload",
        "vidsynth.internal.v1.ProgressInternalService/PublishEvents",
        "vidsynth.internal.v1.SessionInternalService/RegisterAsset",
        # Streams resume from their own cursor instead.
        "vidsynth.v1.ProgressService/Subscribe",
        "vidsynth.v1.StageRunnerService/ReadJobOutput",
    }
    assert must <= retried, must - retried
    assert not never & retried, never & retried
