"""Schemathesis against the real, running API (the production uvicorn command, real Redis, real worker).

The OpenAPI document is the gateway's own (``create_app(...).openapi()``, built in this process
without any I/O; the first test checks the running process serves exactly that document).
Schemathesis generates requests for every documented operation, valid and invalid, bounded per
operation, and sends them over the socket to the API process, which has a real worker behind it
(so /readyz is 200 and submitted jobs really run). Checks: never a 5xx; status codes, content
types, headers and bodies are the documented ones.

(``schemathesis.pytest.from_fixture`` would load the document from the running process directly,
but it sets ``Item._nodeid``, which pytest 9 no longer has.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api.config import ApiSettings
from api.main import create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SETTINGS = ApiSettings(redis_url="redis://127.0.0.1:1/0", styles=["hayao"], default_style="hayao", max_side=128)
OPENAPI = create_app(SETTINGS).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture
def api_base(spawn_api: Callable[..., Any], worker_redis_url: str) -> str:
    # The queue limit is lifted: generated uploads must not trip the (documented) 503 queue-full.
    api = spawn_api(worker_redis_url, ANIMEGAN_MAX_QUEUE_DEPTH="100000")
    base: str = api.base
    return base


def test_the_running_api_serves_the_document_under_test(api_base: str) -> None:
    assert httpx.get(f"{api_base}/openapi.json").json() == OPENAPI


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_the_running_api_honours_its_openapi_document(case: schemathesis.Case, api_base: str) -> None:
    case.call_and_validate(
        base_url=api_base,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ],
        timeout=60,
    )
