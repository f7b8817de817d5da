"""The gateway's shutdown closes what its state holds: every live event feed (and with it the
upstream Subscribe call on the progress service) and the mesh channels."""

from __future__ import annotations

import asyncio

import grpc
import uvicorn

from libs.common.identity import Identity, current_identity
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from tests.progress.conftest import eventually
from tests.support.ports import free_port


async def test_shutdown_closes_the_feeds_and_the_channels(progress_mesh):
    session_id = await progress_mesh.create_session()
    app = create_app(progress_mesh.settings)
    state: GatewayState = app.state.gateway
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, "the gateway to start")

    # A feed whose client has not left (as a stream still open when the process stops).
    token = current_identity.set(Identity("alice"))
    try:
        feed = state.event_feeds.join(session_id, 0)
    finally:
        current_identity.reset(token)
    broker = progress_mesh.event_log.broker
    await eventually(lambda: broker.subscriber_count(session_id) == 1, "the upstream subscription")
    channels = {name: state.clients.channel(name) for name in ("progress", "session")}

    server.should_exit = True
    await asyncio.wait_for(serving, timeout=30)

    assert state.event_feeds.feed_count() == 0
    # Ended by the registry (its pump cancelled) before the channels went, not by a dead channel.
    assert feed.task is not None and feed.task.cancelled()
    await eventually(lambda: broker.subscriber_count(session_id) == 0, "the upstream call to end")
    for name, channel in channels.items():
        assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN, name
