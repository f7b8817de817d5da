"""Issue 11, item 3: schemathesis drives every operation of the gateway's /openapi.json
with generated requests (a bounded number per operation): no 5xx, and every response
matches the schema the gateway publishes."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.identities import bearer

pytestmark = pytest.mark.slow
# The event stream stays open by design (schemathesis would wait on it), the admin mode
# switch would change the shared mesh under other tests.
EXCLUDED_PATHS = r"/events$|/ws$|/capabilities/mode$"
# No GEMINI_API_KEY here: generated scripts answer 503 STAGE_UNAVAILABLE, as documented.
DELIBERATE_5XX = ("/v1/scripts/generate", "STAGE_UNAVAILABLE")


def test_every_operation_answers_within_its_schema_and_never_5xx(ready_mesh):
    schema = schemathesis.openapi.from_url(f"{ready_mesh.url}/openapi.json").exclude(
        path_regex=EXCLUDED_PATHS
    )
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def exercise(case):
            response = case.call(headers=bearer("alice"), timeout=30)
            if response.status_code >= 500:
                # The one deliberate 5xx: a feature this machine is not configured for.
                assert (case.path, response.json()["code"]) == DELIBERATE_5XX, response.text
            case.validate_response(response, checks=[response_schema_conformance])

        exercise()
    assert len(tried) >= 15, tried
