"""A bounded property-based fuzz of the whole OpenAPI schema (schemathesis) against a real
server: whatever the generated request, no 5xx, and answers match the schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from session_service.config import Settings
from session_service.main import create_app


@pytest.fixture(scope="module")
def fuzzed_api(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Development mode: every request is the admin user `dev`, so the fuzz reaches every route.
    app_settings = Settings(
        database_url=migrated_url,
        log_file=str(tmp_path_factory.mktemp("logs") / "app.log"),
        log_level="WARNING",
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(app_settings), host="127.0.0.1", port=0, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    finally:
        server.should_exit = True
        thread.join(20)


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
]


def test_no_request_breaks_the_api(fuzzed_api: Any) -> None:
    operations = [result.ok() for result in fuzzed_api.get_all_operations()]
    assert len(operations) >= 12
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(checks=CHECKS, timeout=30)

        fuzz()
    assert calls >= 10 * len(operations)
