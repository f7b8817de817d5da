"""The one server interceptor every service runs: identity, request id, logging,
metrics and error translation around each vidsynth RPC.

Servicers raise `VidsynthError`; this is the single place that turns it (or any
unexpected exception, without its traceback) into the rich gRPC status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping

import grpc
import structlog
from prometheus_client import Counter, Histogram

from libs.common import ids
from libs.common.errors import CATALOG, VidsynthError
from libs.common.identity import (
    REQUEST_ID_KEY,
    Access,
    Identity,
    Keyring,
    authorize,
    current_identity,
    current_request_id,
)
from libs.common.rate_limit import TokenBucketLimiter
from libs.common.rpc_status import abort_with_error
from libs.common.rpc_tracing import end_server_span, start_server_span

log = structlog.get_logger("vidsynth.rpc")

GRPC_REQUESTS = Counter(
    "vidsynth_grpc_requests_total", "gRPC requests handled", ["service", "method", "code"]
)
GRPC_LATENCY = Histogram(
    "vidsynth_grpc_request_seconds",
    "gRPC request latency",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

_SAFE_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def clean_request_id(value: str | None) -> str:
    """A caller's request id if it is short and plain, else a new one."""
    if value and len(value) <= 64 and set(value) <= _SAFE_REQUEST_ID_CHARS:
        return value
    return ids.new_id("request")


class MeshServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, keyring: Keyring, access: Mapping[str, Access], limiter: TokenBucketLimiter | None = None
    ) -> None:
        self._keyring = keyring
        self._access = dict(access)
        self._limiter = limiter

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith("/vidsynth."):
            return handler
        # Deny by default: servers build the map from every registered service's
        # declared access, so a method missing from it was registered behind its back.
        access = self._access.get(method)
        return _wrap_handler(handler, lambda context: self._call_scope(method, access, context))

    @contextlib.asynccontextmanager
    async def _call_scope(self, method: str, access: Access | None, context: grpc.aio.ServicerContext):
        service, _, name = method.rpartition("/")
        service = service.rsplit(".", 1)[-1]
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        request_id = clean_request_id(metadata.get(REQUEST_ID_KEY))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=name)
        traced = start_server_span(method, metadata)
        request_token = current_request_id.set(request_id)
        identity_token = None
        started = time.perf_counter()
        code = "OK"
        try:
            if access is None:
                log.error("rpc.undeclared_access", method=method)
                raise VidsynthError("PERMISSION_DENIED", "This operation is not open to callers.")
            identity = self._keyring.identity_from_metadata(metadata)
            self._check_rate(identity)
            authorize(identity, access)
            identity_token = current_identity.set(identity)
            structlog.contextvars.bind_contextvars(user_id=identity.user_id)
            yield
        except VidsynthError as error:
            code = error.code
            log.info("rpc.refused", code=error.code, detail=error.message)
            await abort_with_error(context, error)
        except grpc.aio.AbortError:
            code = "ABORTED"
            raise
        except asyncio.CancelledError:  # the client went away (or the server is stopping)
            code = "CANCELLED"
            raise
        except NotImplementedError:
            code = "NOT_IMPLEMENTED"
            await abort_with_error(context, VidsynthError("NOT_IMPLEMENTED"))
        except Exception:
            code = "INTERNAL"
            log.exception("rpc.crashed")
            await abort_with_error(context, VidsynthError("INTERNAL"))
        finally:
            elapsed = time.perf_counter() - started
            GRPC_REQUESTS.labels(service, name, code).inc()
            GRPC_LATENCY.labels(service, name).observe(elapsed)
            log.debug("rpc.done", code=code, ms=round(elapsed * 1000, 2))
            end_server_span(traced, code, _grpc_status(code, context))
            if identity_token is not None:
                current_identity.reset(identity_token)
            current_request_id.reset(request_token)

    def _check_rate(self, identity: Identity) -> None:
        """Users calling with an API key are limited per user; the mesh itself is not."""
        if self._limiter is None or identity.via_mesh:
            return
        wait = self._limiter.acquire(identity.user_id)
        if wait > 0:
            raise VidsynthError("RATE_LIMITED", retry_after_seconds=round(wait, 3))


def _grpc_status(code: str, context: grpc.aio.ServicerContext) -> int:
    """The call's numeric status: the catalog's for its code, else what the servicer set."""
    spec = CATALOG.get(code)
    if spec is not None:
        return spec.grpc_code.value[0]
    if code in ("OK", "CANCELLED"):
        return grpc.StatusCode[code].value[0]
    set_by_servicer = context.code()
    return set_by_servicer.value[0] if isinstance(set_by_servicer, grpc.StatusCode) else 2


ScopeFactory = Callable[[grpc.aio.ServicerContext], contextlib.AbstractAsyncContextManager]


def _wrap_handler(handler: grpc.RpcMethodHandler, scope: ScopeFactory) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            async with scope(context):
                return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(request_iterator, context):
            async with scope(context):
                return await inner_su(request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    # Streams are written from a coroutine rather than yielded from a generator: a stream
    # the client cancels then closes its servicer's generator at once, in the call's own
    # task and context. gRPC drops a cancelled generator unclosed, so its clean-up (and this
    # scope's) would run later in the GC's finalizer, outside the call's context.
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request, context) -> None:
            async with scope(context):
                await _write_all(inner_us(request, context), context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    inner_ss = handler.stream_stream

    async def stream_stream(request_iterator, context) -> None:
        async with scope(context):
            await _write_all(inner_ss(request_iterator, context), context)

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


async def _write_all(responses: AsyncIterator, context: grpc.aio.ServicerContext) -> None:
    async with contextlib.aclosing(responses):
        async for response in responses:
            await context.write(response)
