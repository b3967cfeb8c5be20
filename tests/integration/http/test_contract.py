"""The API keeps the contract it publishes: ``/openapi.json`` is a valid OpenAPI 3.1 document, and a
schemathesis run against the live app (uvicorn on a free port, the real Kafka/Redis/PostgreSQL/Neo4j)
finds no server error and no response outside the schema, with either tenant's key."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from wavegraph.http import create_app
from wavegraph.http.openapi import openapi_spec
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

KEYS = {"acme": "dev-key-acme", "globex": "dev-key-globex"}
# Derandomized by the suite's hypothesis profile (tests/conftest.py); a longer random exploration:
# `HYPOTHESIS_PROFILE=explore WAVEGRAPH_CONTRACT_EXAMPLES=300 pytest <this file>`.
MAX_EXAMPLES = int(os.environ.get("WAVEGRAPH_CONTRACT_EXAMPLES", "15"))
# No 5xx; every status code and every JSON body as documented. Not "schema-valid data is accepted":
# a body may be schema-valid binary and still not be audio, which the API rightly refuses with a 422.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_the_published_document_is_valid_openapi() -> None:
    spec = openapi_spec()
    validate(spec)  # raises on the first violation
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op.get("responses"), f"{method.upper()} {path} documents no answer"
            assert op.get("summary"), f"{method.upper()} {path} has no summary"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_api(services: Settings) -> Iterator[str]:
    """The app served by uvicorn in a thread (its own event loop, lifespan entered)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(30)


def test_no_server_error_and_no_answer_outside_the_schema(live_api: str) -> None:
    """Every operation, ``MAX_EXAMPLES`` generated requests each, sent with either tenant's key."""
    api_schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            for key in KEYS.values():
                case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

        check()


def test_a_500_never_carries_a_traceback(live_api: str) -> None:
    """What a client sees of an unexpected failure: a request id, not the code (a malformed
    multipart/chunked body is the cheapest real way into the error path that stays a 4xx here)."""
    r = httpx.post(
        f"{live_api}/v1/ingest/edges", content=b"\xff" * 10, headers={"Authorization": "Bearer dev-key-acme"}
    )
    assert r.status_code < 500
    assert "Traceback" not in r.text and 'File "' not in r.text
