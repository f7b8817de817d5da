"""Who is calling: API keys for users, a shared mesh credential for services.

A public RPC accepts `authorization: Bearer <api key>`. An internal RPC, or a
public one made by the gateway on a user's behalf, carries the mesh token and
the user id the gateway authenticated.
"""

from __future__ import annotations

import contextvars
import enum
import hmac
from dataclasses import dataclass

from libs.common.errors import VidsynthError

AUTHORIZATION_KEY = "authorization"
MESH_TOKEN_KEY = "x-vidsynth-mesh-token"  # noqa: S105 - a header name, not a secret
USER_ID_KEY = "x-vidsynth-user-id"
REQUEST_ID_KEY = "x-request-id"


class Access(enum.Enum):
    """Who may call an RPC."""

    USER = "user"  # a user: by API key, or by the mesh on a user's behalf
    ADMIN = "admin"  # a user with the admin role
    INTERNAL = "internal"  # only the mesh credential


@dataclass(frozen=True)
class Identity:
    user_id: str
    is_admin: bool = False
    via_mesh: bool = False


current_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("identity", default=None)
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def parse_api_keys(spec: str) -> dict[str, str]:
    """`"key1=alice,key2=bob"` -> {"key1": "alice", "key2": "bob"}."""
    keys: dict[str, str] = {}
    for pair in spec.split(","):
        if not pair.strip():
            continue
        key, sep, user = pair.strip().partition("=")
        if not sep or not key or not user:
            raise ValueError("VIDSYNTH_API_KEYS must look like key1=alice,key2=bob")
        keys[key] = user
    return keys


class Keyring:
    """Resolves bearer keys and the mesh token in constant time."""

    def __init__(self, api_keys: dict[str, str], mesh_token: str, admin_users: frozenset[str]) -> None:
        self._api_keys = [(key.encode(), user) for key, user in api_keys.items()]
        self._mesh_token = mesh_token.encode()
        self._admins = admin_users

    def user_for_key(self, key: str) -> str | None:
        presented = key.encode()
        found: str | None = None
        for candidate, user in self._api_keys:
            if hmac.compare_digest(candidate, presented):
                found = user
        return found

    def is_mesh_token(self, token: str) -> bool:
        return bool(self._mesh_token) and hmac.compare_digest(self._mesh_token, token.encode())

    def identity_for_key(self, key: str) -> Identity:
        user = self.user_for_key(key)
        if user is None:
            raise VidsynthError("UNAUTHENTICATED")
        return Identity(user, is_admin=user in self._admins)

    def identity_from_metadata(self, metadata: dict[str, str]) -> Identity:
        """Identity for a call's metadata, or UNAUTHENTICATED."""
        mesh_token = metadata.get(MESH_TOKEN_KEY, "")
        if mesh_token:
            if not self.is_mesh_token(mesh_token):
                raise VidsynthError("UNAUTHENTICATED", "The mesh credential is not valid.")
            user = metadata.get(USER_ID_KEY, "")
            return Identity(user, is_admin=user in self._admins, via_mesh=True)
        return self.identity_from_bearer(metadata.get(AUTHORIZATION_KEY, ""))

    def identity_from_bearer(self, authorization: str | None) -> Identity:
        """Identity for an `Authorization: Bearer <api key>` value, or UNAUTHENTICATED."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise VidsynthError("UNAUTHENTICATED")
        return self.identity_for_key(key.strip())


def authorize(identity: Identity, access: Access) -> None:
    if access is Access.INTERNAL and not identity.via_mesh:
        raise VidsynthError("PERMISSION_DENIED", "This operation is internal to the mesh.")
    if access in (Access.USER, Access.ADMIN) and not identity.user_id:
        raise VidsynthError("UNAUTHENTICATED", "The call names no user.")
    if access is Access.ADMIN and not identity.is_admin:
        raise VidsynthError("PERMISSION_DENIED")


def require_identity() -> Identity:
    identity = current_identity.get()
    if identity is None:
        raise VidsynthError("UNAUTHENTICATED")
    return identity
