"""Property-based fuzzing of every route against the service's own OpenAPI schema.

schemathesis generates valid and invalid requests from the schema and sends them
over HTTP to the real uvicorn process of the `server` fixture, so uvicorn's
request parsing and the raw-body reader of /classify run as in production. Every
response goes through all of schemathesis's built-in checks, among them: no 5xx,
a documented status code and content type, a body that matches the documented
schema, schema-valid requests accepted and schema-invalid ones rejected.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from app.config import DEFAULT_MODEL_PATH, Settings
from app.main import create_app
from tests.conftest import Server

pytestmark = pytest.mark.slow

# The schema comes from the application object at import time because
# schemathesis.pytest.from_fixture, which could read it from the server fixture,
# fails on pytest 9 (it sets Function._nodeid, which pytest 9 removed).
# test_fuzz_schema_matches_served checks that both schemas are the same.
OPENAPI = create_app(Settings(model_path=DEFAULT_MODEL_PATH, device="cpu")).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)

# Generated data is large and slow to build (a batch holds up to
# max_batch_size x 100 numbers), so Hypothesis's size and speed health checks
# would stop the run although nothing is wrong.
FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck))
REQUEST_TIMEOUT_S = 30


def test_fuzz_schema_matches_served(server: Server) -> None:
    served = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert served == OPENAPI, "the server's settings change its OpenAPI schema"


@schema.include(path="/classify").parametrize()
@settings(FUZZ_SETTINGS, max_examples=300)
def test_classify_fuzz(case: Case[Any], server: Server) -> None:
    case.call_and_validate(base_url=server.url, timeout=REQUEST_TIMEOUT_S)


@schema.exclude(path="/classify").parametrize()
@settings(FUZZ_SETTINGS, max_examples=200)
def test_other_routes_fuzz(case: Case[Any], server: Server) -> None:
    case.call_and_validate(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
