"""The zero-configuration database: the session writes, a turn and strict input behave on
SQLite as on MariaDB (SQLite has no row locks: `FOR UPDATE` is left out there)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from session_service.config import Settings
from session_service.db.engine import create_engine
from session_service.db.migrate import upgrade_to_head
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import auth, eventually


async def _migrated(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    """Settings for a new SQLite database, migrated."""
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    engine = create_engine(settings)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    return settings


async def test_sessions_and_a_turn_on_sqlite(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = await _migrated(make_settings, tmp_path)
    headers = auth("sqlite-user")
    async with serve_app(settings) as client:
        created = await client.post("/api/sessions", headers=headers)
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        path = f"/api/sessions/{session_id}"
        unchanged = await client.patch(path, json={}, headers=headers)
        assert unchanged.json()["updated_at"] == created.json()["updated_at"]
        assert (await client.patch(path, json={"title": "  "}, headers=headers)).status_code == 422
        assert (
            await client.patch(path, json={"title": "kept"}, headers=headers)
        ).status_code == 200
        nan = await client.patch(
            path,
            content=b'{"context": {"x": NaN}}',
            headers={**headers, "Content-Type": "application/json"},
        )
        assert nan.status_code == 422
        turned = await client.post(f"{path}/messages", json={"content": "hi"}, headers=headers)
        assert turned.status_code == 201, turned.text
        assert (await client.delete(path, headers=headers)).status_code == 204
        assert (await client.get(path, headers=headers)).status_code == 404
        assert (await client.delete(path, headers=headers)).status_code == 404


async def test_the_tree_on_sqlite(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """Edit, switch, regenerate, fork, feedback and paging: the recursive queries on SQLite."""
    settings = await _migrated(make_settings, tmp_path)
    headers = auth("sqlite-tree")
    async with serve_app(settings) as client:
        session_id = (await client.post("/api/sessions", headers=headers)).json()["session_id"]
        path = f"/api/sessions/{session_id}"
        first = (
            await client.post(f"{path}/messages", json={"content": "a"}, headers=headers)
        ).json()
        second = (
            await client.post(f"{path}/messages", json={"content": "b"}, headers=headers)
        ).json()
        answer = first["assistant_message"]["id"]
        edit = await client.post(
            f"{path}/messages", json={"content": "b2", "parent_id": answer}, headers=headers
        )
        assert edit.json()["user_message"]["sibling_ids"] == [
            second["user_message"]["id"],
            edit.json()["user_message"]["id"],
        ]
        regenerated = await client.post(
            f"{path}/messages/{edit.json()['assistant_message']['id']}/regenerate", headers=headers
        )
        assert regenerated.status_code == 201, regenerated.text
        switched = await client.patch(
            path, json={"active_message_id": second["user_message"]["id"]}, headers=headers
        )
        assert switched.json()["active_message_id"] == second["assistant_message"]["id"]
        page = (await client.get(f"{path}/messages", params={"limit": 2}, headers=headers)).json()
        assert page["items"][0]["content"] == "b"
        older = (
            await client.get(
                f"{path}/messages", params={"before": page["next_cursor"]}, headers=headers
            )
        ).json()
        assert [m["content"] for m in older["items"]] == [
            "a",
            first["assistant_message"]["content"],
        ]
        rated = await client.put(
            f"{path}/messages/{answer}/feedback", json={"rating": "up"}, headers=headers
        )
        assert rated.json()["feedback"]["rating"] == "up"
        forked = await client.post(f"{path}/fork", json={"message_id": answer}, headers=headers)
        assert forked.json()["message_count"] == 2
        assert (await client.delete(path, headers=headers)).status_code == 204


async def test_stop_and_interrupt_on_sqlite(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """A reply stopped mid-generation, and a turn that interrupts one, on SQLite."""
    settings = await _migrated(llm_settings, tmp_path)
    headers = auth("sqlite-stop")
    fake_llm.delay = 2
    async with serve_app(settings) as client:
        session_id = (await client.post("/api/sessions", headers=headers)).json()["session_id"]
        path = f"/api/sessions/{session_id}"

        async def slow_turn(count: int) -> asyncio.Task[Any]:
            """A turn, once its reply is being generated (the session holds `count`)."""
            running = asyncio.create_task(
                client.post(f"{path}/messages", json={"content": "slow"}, headers=headers)
            )

            async def generating() -> bool:
                detail = (await client.get(path, headers=headers)).json()
                return bool(detail["message_count"] == count)

            await eventually(generating)
            return running

        running = await slow_turn(2)
        reply_id = (await client.get(path, headers=headers)).json()["active_message_id"]
        stopped = await client.post(f"{path}/messages/{reply_id}/stop", headers=headers)
        assert stopped.json()["metadata"]["status"] == "stopped"
        assert (await running).json()["assistant_message"] == stopped.json()
        running = await slow_turn(4)
        fake_llm.delay = 0
        second = await client.post(
            f"{path}/messages", json={"content": "now", "if_busy": "interrupt"}, headers=headers
        )
        assert second.status_code == 201
        assert (await running).json()["assistant_message"]["metadata"]["status"] == "stopped"


async def test_search_on_sqlite(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """Words and CJK substrings, titles and messages, nothing after a deletion, on SQLite."""
    settings = await _migrated(make_settings, tmp_path)
    headers = auth("sqlite-search")
    async with serve_app(settings) as client:
        created = await client.post("/api/sessions", json={"title": "CAFÉ notes"}, headers=headers)
        path = f"/api/sessions/{created.json()['session_id']}"
        turned = await client.post(
            f"{path}/messages", json={"content": "Où est le 北京饭店?"}, headers=headers
        )
        question = turned.json()["user_message"]["id"]

        async def found(q: str) -> list[int | None]:
            page = (await client.get("/api/search", params={"q": q}, headers=headers)).json()
            return [item["message"]["id"] if item["message"] else None for item in page["items"]]

        assert question in await found("OÙ")
        assert question in await found("京饭")
        assert await found("café") == [None]
        long = " ".join(f"w{i}" for i in range(3000))  # more terms than a statement deletes
        await client.post(f"{path}/messages", json={"content": long}, headers=headers)
        assert len(await found("w2999")) == 2  # the question, and the answer quoting it
        assert (await client.delete(path, headers=headers)).status_code == 204
        assert await found("京饭") == []
