"""BatchGetSessions: the internal, owner-agnostic lookup the cleanup service relies on."""

from __future__ import annotations

from libs.common import ids
from tests.session.conftest import rpc_error
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.internal.v1 import session_internal_pb2
from vidsynth.v1 import session_pb2


async def test_mesh_sees_every_owner_and_skips_unknown_ids(stub, internal) -> None:
    alice = await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"))
    bob = await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=user_metadata("bob"))
    unknown = ids.new_id("session")
    reply = await internal.BatchGetSessions(
        session_internal_pb2.BatchGetSessionsRequest(session_ids=[alice.session_id, unknown, bob.session_id]),
        metadata=mesh_metadata(),
    )
    assert [(s.session_id, s.user_id) for s in reply.sessions] == [
        (alice.session_id, "alice"),
        (bob.session_id, "bob"),
    ]


async def test_user_keys_are_refused(stub, internal) -> None:
    request = session_internal_pb2.BatchGetSessionsRequest(session_ids=[ids.new_id("session")])
    error = await rpc_error(internal.BatchGetSessions(request, metadata=user_metadata("root")))
    assert error.code == "PERMISSION_DENIED"


async def test_malformed_ids_and_oversized_batches_are_invalid(stub, internal) -> None:
    traversal = session_internal_pb2.BatchGetSessionsRequest(session_ids=["../../etc"])
    assert (
        await rpc_error(internal.BatchGetSessions(traversal, metadata=mesh_metadata()))
    ).code == "INVALID_ID"
    too_many = session_internal_pb2.BatchGetSessionsRequest(
        session_ids=[ids.new_id("session") for _ in range(1001)]
    )
    error = await rpc_error(internal.BatchGetSessions(too_many, metadata=mesh_metadata()))
    assert error.code == "INVALID_ARGUMENT"
    assert error.field_violations[0].field == "session_ids"
