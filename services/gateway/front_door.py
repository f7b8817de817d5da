"""The gateway's front door middleware, installed in one place so its order is explicit.

Outermost first: security headers -> CORS -> WebSocket origin -> rate limit -> routing
guard (405, ids) -> body cap -> app. CORS sits outside the rate limit so preflights are never
throttled and 429s stay readable by browsers; preflights allow every method the API has;
every refusal is problem+json with the request id.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from libs.common.rate_limit import TokenBucketLimiter
from services.gateway.body_limit import BodyLimitMiddleware
from services.gateway.path_ids import PathIdMiddleware, flat_routes
from services.gateway.rate_limit import RateLimitMiddleware
from services.gateway.security_headers import SecurityHeadersMiddleware
from services.gateway.state import GatewayState
from services.gateway.ws_origin import WebSocketOriginMiddleware

CORS_ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Request-ID",
    "Range",
]
CORS_EXPOSED_HEADERS = ["X-Request-ID", "Retry-After", "Location", "Content-Range", "Accept-Ranges"]


def api_methods(app: FastAPI) -> list[str]:
    """Every method some route of the app answers (what CORS preflights must allow)."""
    methods = {
        method for route in flat_routes(app.routes) for method in getattr(route, "methods", None) or ()
    }
    return sorted(methods | {"OPTIONS"})


def install_front_door(app: FastAPI, state: GatewayState) -> None:
    """Adds the middleware once the routes are in; call it before RequestContextMiddleware is
    added (that stays outermost)."""
    settings = state.gateway_settings
    # Starlette wraps in reverse order of add_middleware: the last added runs first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.gateway_max_body_bytes)
    app.add_middleware(PathIdMiddleware, routes=app.router.routes)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=TokenBucketLimiter(settings.gateway_rate_limit_per_second, settings.gateway_rate_limit_burst),
        keyring=state.keyring,
        signer=state.stream_tokens,
    )
    app.add_middleware(WebSocketOriginMiddleware, allowed_origins=settings.cors_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=api_methods(app),
        allow_headers=CORS_ALLOWED_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware)
