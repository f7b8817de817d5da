"""Liveness and readiness: /healthz answers while the process runs, /readyz only
when every service of the mesh reports SERVING."""

from __future__ import annotations

import asyncio

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.settings import SERVICE_PORT_OFFSETS

router = APIRouter(tags=["health"])
READINESS_TIMEOUT_SECONDS = 1.0


async def service_health(channel: grpc.aio.Channel) -> str:
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READINESS_TIMEOUT_SECONDS
        )
    except grpc.RpcError:
        return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


async def mesh_health(request: Request) -> dict[str, str]:
    clients = request.app.state.clients
    names = list(SERVICE_PORT_OFFSETS)
    states = await asyncio.gather(*(service_health(clients.channel(name)) for name in names))
    return dict(zip(names, states, strict=True))


@router.get("/healthz", summary="Liveness of the gateway process")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: every service SERVING")
async def readyz(request: Request) -> JSONResponse:
    services = await mesh_health(request)
    ready = all(state == "SERVING" for state in services.values())
    return JSONResponse({"ready": ready, "services": services}, status_code=200 if ready else 503)
