"""Bearer API-key authentication for HTTP routes (a FastAPI dependency).

`bearer_scheme` only declares the scheme (it puts `bearer` on every operation that depends
on it in /openapi.json); the keyring checks the header itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from libs.common.identity import Identity, current_identity
from services.gateway.state import gateway_state

bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    description="`Authorization: Bearer <api key>` (keys map to users in VIDSYNTH_API_KEYS).",
    auto_error=False,
)


async def authenticated(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Identity:
    """The caller's identity; also bound for the mesh clients' outgoing metadata."""
    identity = gateway_state(request.app).keyring.identity_from_bearer(request.headers.get("authorization"))
    current_identity.set(identity)
    request.state.identity = identity
    return identity


CurrentUser = Annotated[Identity, Depends(authenticated)]
