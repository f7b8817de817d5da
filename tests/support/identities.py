"""The users, keys and mesh credential every test mesh is configured with."""

from __future__ import annotations

API_KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789", "root": "root-key-0123456789"}
ADMIN_USERS = "root"
MESH_TOKEN = "test-mesh-token-0123456789"
API_KEYS_SPEC = ",".join(f"{key}={user}" for user, key in API_KEYS.items())


def bearer(user: str) -> dict[str, str]:
    """HTTP headers authenticating as `user`."""
    return {"Authorization": f"Bearer {API_KEYS[user]}"}


def user_metadata(user: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata authenticating as `user` with their API key."""
    return (("authorization", f"Bearer {API_KEYS[user]}"),)


def mesh_metadata(user: str = "") -> tuple[tuple[str, str], ...]:
    """gRPC metadata of an internal call made by the mesh on behalf of `user`."""
    metadata = [("x-vidsynth-mesh-token", MESH_TOKEN)]
    if user:
        metadata.append(("x-vidsynth-user-id", user))
    return tuple(metadata)


def mesh_env() -> dict[str, str]:
    return {
        "VIDSYNTH_API_KEYS": API_KEYS_SPEC,
        "VIDSYNTH_ADMIN_USERS": ADMIN_USERS,
        "VIDSYNTH_MESH_TOKEN": MESH_TOKEN,
    }
