"""Logs: one format for stderr and the file, a request id on every line of a request, JSON
lines on request."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from session_service.config import Settings
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import auth


async def test_json_lines_carry_the_request_id(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    log_file = tmp_path / "json.log"
    alice = auth("alice-logs")
    async with serve_app(llm_settings(log_format="json", log_file=str(log_file))) as client:
        created = await client.post(
            "/api/sessions", json={}, headers={**alice, "X-Request-ID": "a" * 32}
        )
        session_id = created.json()["session_id"]
        fake_llm.fail_status = 500  # the reply's own task logs the failure
        turn = await client.post(
            f"/api/sessions/{session_id}/messages", json={"content": "hi"}, headers=alice
        )
        assert created.headers["x-request-id"] == "a" * 32
        turn_request_id = turn.headers["x-request-id"]
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"time", "level", "name", "message", "request_id"} <= set(line) for line in lines)
    created_line = next(line for line in lines if line["message"].startswith("session created"))
    assert created_line["request_id"] == "a" * 32
    assert session_id in created_line["message"]
    failed = next(line for line in lines if line["message"].startswith("turn failed"))
    assert failed["request_id"] == turn_request_id
    assert failed["level"] == "WARNING"


async def test_text_lines_name_the_request(
    llm_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    log_file = tmp_path / "text.log"
    async with serve_app(llm_settings(log_file=str(log_file))) as client:
        await client.post(
            "/api/sessions", json={}, headers={**auth("bob-logs"), "X-Request-ID": "b" * 32}
        )
    text = log_file.read_text()
    assert f"[{'b' * 32}] session_service.chat.sessions: session created" in text
    assert "[-] session_service.main: DEVELOPMENT MODE" not in text  # a secret is set here
