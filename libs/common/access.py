"""What the protos declare about each RPC, read from their method options: who may call
it (`option (vidsynth.v1.access)`, protos/vidsynth/v1/access.proto) and whether a retry
is safe (the standard `option idempotency_level`).

The protos are the one place this is written down. A server builds its policy from the
descriptors of the services it registers and refuses to start when any vidsynth RPC
declares no access; the mesh clients build their retry config the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from libs.common.identity import Access
from vidsynth.v1 import access_pb2

_DECLARED: Mapping[int, Access] = {
    access_pb2.ACCESS_USER: Access.USER,
    access_pb2.ACCESS_ADMIN: Access.ADMIN,
    access_pb2.ACCESS_INTERNAL: Access.INTERNAL,
}
_RETRY_SAFE = frozenset(
    {descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, descriptor_pb2.MethodOptions.IDEMPOTENT}
)
VIDSYNTH_PACKAGE_PREFIX = "vidsynth."


class UndeclaredAccessError(RuntimeError):
    """A service has a vidsynth RPC that declares no access level: it must not start."""


def full_method(method: MethodDescriptor) -> str:
    """`/vidsynth.v1.SessionService/CreateSession`, the name interceptors see."""
    return f"/{method.containing_service.full_name}/{method.name}"


def declared_access(method: MethodDescriptor) -> Access | None:
    """The access level the RPC's options declare, None when it declares none."""
    return _DECLARED.get(method.GetOptions().Extensions[access_pb2.access])


def access_policy(services: Iterable[ServiceDescriptor]) -> dict[str, Access]:
    """Access level of every vidsynth RPC of `services`, by full method name.

    Raises UndeclaredAccessError naming every RPC without one: nothing is open by default.
    """
    policy: dict[str, Access] = {}
    undeclared: list[str] = []
    for service in services:
        if not service.full_name.startswith(VIDSYNTH_PACKAGE_PREFIX):
            continue
        for method in service.methods:
            access = declared_access(method)
            if access is None:
                undeclared.append(method.full_name)
            else:
                policy[full_method(method)] = access
    if undeclared:
        raise UndeclaredAccessError(
            "these RPCs declare no access level; add `option (vidsynth.v1.access) = ACCESS_...;` "
            f"to each in its .proto: {', '.join(undeclared)}"
        )
    return policy


def is_unary(method: MethodDescriptor) -> bool:
    return not method.client_streaming and not method.server_streaming


def retry_safe_unary_methods(services: Iterable[ServiceDescriptor]) -> dict[str, list[str]]:
    """Unary RPCs whose protos declare them NO_SIDE_EFFECTS or IDEMPOTENT, by service.

    Streams are left out: Subscribe and ReadJobOutput resume from their own cursor
    (after_seq, offset), which a blind transport retry would not know.
    """
    found: dict[str, list[str]] = {}
    for service in services:
        for method in service.methods:
            if is_unary(method) and method.GetOptions().idempotency_level in _RETRY_SAFE:
                found.setdefault(service.full_name, []).append(method.name)
    return found
