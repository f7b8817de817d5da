"""Who is calling: API keys for users, a shared mesh credential for services.

A public RPC accepts `authorization: Bearer <api key>`. An internal RPC, or a
public one made by the gateway on a user's behalf, carries the mesh token and
the user id the gateway authenticated.
"""

from __future__ import annotations

import contextvars
import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from libs.common.errors import VidsynthError
from libs.common.keys_file import FileKeys, key_digest

AUTHORIZATION_KEY = "authorization"
MESH_TOKEN_KEY = "x-vidsynth-mesh-token"  # noqa: S105 - a header name, not a secret
USER_ID_KEY = "x-vidsynth-user-id"
REQUEST_ID_KEY = "x-request-id"
# Longer than any key we issue or accept; longer ones are refused before they are hashed.
MAX_KEY_CHARS = 512


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


@dataclass(frozen=True)
class KeyTable:
    """One consistent view of who the keys belong to: replaced whole on a reload."""

    users_by_digest: Mapping[bytes, str]
    admins: frozenset[str]


class Keyring:
    """Resolves bearer keys and the mesh token.

    Keys are held as SHA-256 digests (libs/common/keys_file.py says why that is enough), from
    VIDSYNTH_API_KEYS and, when set, the keys file; `install` swaps in a new file's keys at
    once for every later call, which is how a revoked key stops working without a restart.
    """

    def __init__(
        self,
        api_keys: dict[str, str],
        mesh_token: str,
        admin_users: frozenset[str],
        file_keys: FileKeys | None = None,
    ) -> None:
        self._env_users = {key_digest(key): user for key, user in api_keys.items()}
        self._env_admins = frozenset(admin_users)
        self._mesh_token = mesh_token.encode()
        self._table = KeyTable(self._env_users, self._env_admins)
        if file_keys is not None:
            self.install(file_keys)

    def install(self, file_keys: FileKeys) -> None:
        """The environment's keys plus `file_keys` (the file's entry wins a shared key)."""
        self._table = KeyTable(
            {**self._env_users, **file_keys.users_by_digest}, self._env_admins | file_keys.admins
        )

    def user_for_key(self, key: str) -> str | None:
        if not key or len(key) > MAX_KEY_CHARS:
            return None
        return self._table.users_by_digest.get(key_digest(key))

    def is_mesh_token(self, token: str) -> bool:
        return bool(self._mesh_token) and hmac.compare_digest(self._mesh_token, token.encode())

    def identity_for_key(self, key: str) -> Identity:
        table = self._table
        user = table.users_by_digest.get(key_digest(key)) if 0 < len(key) <= MAX_KEY_CHARS else None
        if user is None:
            raise VidsynthError("UNAUTHENTICATED")
        return Identity(user, is_admin=user in table.admins)

    def identity_from_metadata(self, metadata: dict[str, str]) -> Identity:
        """Identity for a call's metadata, or UNAUTHENTICATED."""
        mesh_token = metadata.get(MESH_TOKEN_KEY, "")
        if mesh_token:
            if not self.is_mesh_token(mesh_token):
                raise VidsynthError("UNAUTHENTICATED", "The mesh credential is not valid.")
            user = metadata.get(USER_ID_KEY, "")
            return Identity(user, is_admin=user in self._table.admins, via_mesh=True)
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
