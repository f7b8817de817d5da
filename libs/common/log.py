"""structlog JSON logging: one processor chain, configured in one place.

Request, session and job ids are bound with `bind_context` (contextvars), so every
line logged while handling a call carries them without being passed around; a line
logged inside an OpenTelemetry span also carries its `trace_id` and `span_id`, so logs
and traces join.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

_service_name = "vidsynth"


def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("service", _service_name)
    return event_dict


def drop_uvicorn_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The current span's ids (W3C hex spelling), when a span is current."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    add_trace_ids,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_service,
    drop_uvicorn_color_message,
]

# structlog's dict tracebacks include every frame's locals by default, and those hold
# secrets (the caller's Authorization metadata, API keys): keep frames, drop locals.
TRACEBACKS_WITHOUT_LOCALS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def configure_logging(service: str, level: str = "info") -> None:
    """JSON lines on stderr for structlog and the standard library alike."""
    global _service_name
    _service_name = service
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            TRACEBACKS_WITHOUT_LOCALS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=SHARED_PROCESSORS,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                TRACEBACKS_WITHOUT_LOCALS,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def bind_context(**ids: str) -> None:
    """Bind ids (request_id, session_id, job_id) to every log line of this task."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v})


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
