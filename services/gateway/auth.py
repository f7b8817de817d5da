"""Bearer API-key authentication for HTTP routes (a FastAPI dependency)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from libs.common.identity import Identity, current_identity


async def authenticated(request: Request) -> Identity:
    """The caller's identity; also bound for the mesh clients' outgoing metadata."""
    identity = request.app.state.keyring.identity_from_bearer(request.headers.get("authorization"))
    current_identity.set(identity)
    request.state.identity = identity
    return identity


CurrentUser = Annotated[Identity, Depends(authenticated)]
