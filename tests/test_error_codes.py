"""Every error body carries a machine `code` beside `detail` (docs/api.md §1): the service's
own errors, FastAPI's 422 list, Starlette's unknown routes and methods, the body limit, and a
streamed reply's `error` event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from httpx import AsyncClient

from session_service.config import Settings
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import Headers, new_session, turn
from tests.sse import uvicorn_server
from tests.test_streaming import stream_turn


def _body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"detail", "code"}
    return body


async def test_the_codes_of_plain_errors(client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(client, alice)
    missing = await client.get("/api/sessions")
    assert _body(missing, 401)["code"] == "unauthorized"
    unknown = await client.get("/api/sessions/nobody-has-this", headers=alice)
    assert _body(unknown, 404)["code"] == "session_not_found"
    no_route = await client.get("/api/nowhere", headers=alice)
    assert _body(no_route, 404)["code"] == "not_found"
    wrong_method = await client.put(f"/api/sessions/{session_id}", headers=alice)
    assert _body(wrong_method, 405)["code"] == "method_not_allowed"
    not_admin = await client.get("/api/sessions/status", headers=alice)
    assert _body(not_admin, 403)["code"] == "forbidden"
    too_long = await turn(client, alice, session_id, "x" * 32001)
    assert _body(too_long, 413)["code"] == "payload_too_large"
    too_big = await client.post(
        "/api/sessions", content=b"{" + b" " * (1024 * 1024) + b"}", headers=alice
    )
    assert _body(too_big, 413)["code"] == "payload_too_large"


async def test_invalid_input_keeps_fastapi_s_list_and_adds_the_code(
    client: AsyncClient, alice: Headers
) -> None:
    session_id = await new_session(client, alice)
    answer = await client.post(
        f"/api/sessions/{session_id}/messages", json={"content": 5}, headers=alice
    )
    body = _body(answer, 422)
    assert body["code"] == "invalid_input"
    assert isinstance(body["detail"], list)
    assert body["detail"][0]["loc"] == ["body", "content"]
    not_json = await client.post(
        f"/api/sessions/{session_id}/messages",
        content=b'{"content": NaN}',
        headers=alice | {"content-type": "application/json"},
    )
    assert _body(not_json, 422)["code"] == "invalid_input"
    bad_utf8 = await client.post(
        "/api/sessions",
        content=b'{"title": "\xff"}',
        headers=alice | {"content-type": "application/json"},
    )
    assert _body(bad_utf8, 422)["code"] == "invalid_input"


async def test_busy_and_overloaded(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.delay = 0.5
    async with serve_app(llm_settings(max_concurrent_turns=2)) as client:
        first, second, third = [await new_session(client, alice) for _ in range(3)]
        running = [asyncio.create_task(turn(client, alice, first, "slow"))]
        await asyncio.sleep(0.2)
        busy = await turn(client, alice, first, "now", if_busy="reject")
        running.append(asyncio.create_task(turn(client, alice, second, "slow")))
        await asyncio.sleep(0.2)
        overloaded = await turn(client, alice, third, "now")
        assert [(await task).status_code for task in running] == [201, 201]
    assert _body(busy, 409)["code"] == "session_busy"
    assert _body(overloaded, 503)["code"] == "overloaded"


async def test_a_streamed_failure_s_error_event_has_the_code(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.fail_status = 500
    async with uvicorn_server(llm_settings()) as url, httpx.AsyncClient(base_url=url) as http:
        session_id = await new_session(http, alice)
        events = await stream_turn(http, alice, session_id, "hello")
    assert events[-1].name == "error"
    assert events[-1].data == {
        "detail": "the LLM failed: HTTP 500",
        "code": "upstream_failed",
        "status": 502,
    }
