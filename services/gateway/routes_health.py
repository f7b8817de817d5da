"""Liveness and readiness: /healthz answers while the process runs, /readyz only
when every service of the mesh reports serving (503 with the same body otherwise)."""

from __future__ import annotations

import asyncio

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.settings import SERVICE_PORT_OFFSETS
from services.gateway import api_models as m
from services.gateway.api_enums import ServingStatus
from services.gateway.contract import problems
from services.gateway.json_body import ContractRoute
from services.gateway.state import gateway_state

router = APIRouter(tags=["health"], route_class=ContractRoute)
READINESS_TIMEOUT_SECONDS = 1.0


async def service_health(channel: grpc.aio.Channel) -> ServingStatus:
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READINESS_TIMEOUT_SECONDS
        )
    except grpc.RpcError:
        return ServingStatus.UNREACHABLE
    return ServingStatus(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status).lower())


async def mesh_health(request: Request) -> dict[str, ServingStatus]:
    clients = gateway_state(request.app).clients
    names = list(SERVICE_PORT_OFFSETS)
    states = await asyncio.gather(*(service_health(clients.channel(name)) for name in names))
    return dict(zip(names, states, strict=True))


@router.get("/healthz", summary="Liveness of the gateway process", openapi_extra=problems())
async def healthz() -> m.Liveness:
    return m.Liveness(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: every service serving (503 with the same body when not)",
    response_model=m.Readiness,
    responses={503: {"model": m.Readiness, "description": "Some service is not serving."}},
)
async def readyz(request: Request) -> JSONResponse:
    services = await mesh_health(request)
    ready = all(state is ServingStatus.SERVING for state in services.values())
    body = m.Readiness(ready=ready, services=services)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)
