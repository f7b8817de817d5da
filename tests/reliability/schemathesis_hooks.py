"""Schemathesis hooks for tests/reliability/test_schema.py (loaded via SCHEMATHESIS_HOOKS).

Two string formats of the gateway's spec name values a schema cannot describe: an opaque
page token (only one a previous page handed out is valid) and a webhook URL (only hosts the
server allows). Schemathesis is told how to make valid ones, so its positive cases are
really valid; its negative cases still mutate them freely.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

# The reliability meshes allow this webhook host (tests/reliability/conftest.py: WEBHOOK_HOST).
ALLOWED_WEBHOOK = "https://hooks.example.com/vidsynth"

schemathesis.openapi.format("page-token", st.just(""))
schemathesis.openapi.format("webhook-url", st.sampled_from(["", ALLOWED_WEBHOOK]))
