"""Automatic titles (api-v2 §4): from the first question, beside the reply; a user's title is
never replaced; a failed attempt is tried again at the next turn; streamed, audited, mirrored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from httpx import AsyncClient

from session_service.config import Settings
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.fakes.ragflow import FakeRagflow
from tests.helpers import Headers, answered, auth, eventually, new_session
from tests.sse import read_events, uvicorn_server

ADMIN = auth("titles-admin", admin=True)


async def _title(client: AsyncClient, headers: Headers, session_id: str) -> str:
    title: str = (await client.get(f"/api/sessions/{session_id}", headers=headers)).json()["title"]
    return title


async def _titled(client: AsyncClient, headers: Headers, session_id: str, expected: str) -> None:
    async def done() -> bool:
        return await _title(client, headers, session_id) == expected

    await eventually(done)


def _titling(title: str | Exception, answer: str = "an answer") -> Callable[[Any], str]:
    """A fake LLM's reply: `title` to the title prompt (raised, if an exception)."""

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"].startswith("Title this conversation"):
            if isinstance(title, Exception):
                raise title
            return title
        return answer

    return reply


async def test_the_offline_model_titles_by_the_first_words(
    client: AsyncClient, alice: Headers
) -> None:
    session_id = await new_session(client, alice)
    assert await _title(client, alice, session_id) == "New chat"
    await answered(client, alice, session_id, "What should I see in Lisbon this spring, please?")
    await _titled(client, alice, session_id, "What should I see in Lisbon this spring")
    events = (
        await client.get("/api/audit", params={"session_id": session_id}, headers=ADMIN)
    ).json()["items"]
    assert ("session.titled", {"title": "What should I see in Lisbon this spring"}) in [
        (e["action"], e["detail"]) for e in events
    ]
    await answered(client, alice, session_id, "And in summer?")  # titled once
    assert await _title(client, alice, session_id) == "What should I see in Lisbon this spring"


async def test_a_title_the_user_gave_is_never_replaced(client: AsyncClient, alice: Headers) -> None:
    given = await new_session(client, alice, title="Mine")
    later = await new_session(client, alice)
    patched = await client.patch(f"/api/sessions/{later}", json={"title": "Later"}, headers=alice)
    assert patched.status_code == 200
    for session_id, title in ((given, "Mine"), (later, "Later")):
        await answered(client, alice, session_id, "Please title me")
        assert await _title(client, alice, session_id) == title
    events = (await client.get("/api/audit", headers=ADMIN)).json()["items"]
    assert not [
        e for e in events if e["action"] == "session.titled" and e["session_id"] in (given, later)
    ]


async def test_no_titles_with_auto_title_off(
    make_settings: Callable[..., Settings], alice: Headers
) -> None:
    async with serve_app(make_settings(auto_title=False)) as client:
        session_id = await new_session(client, alice)
        await answered(client, alice, session_id, "What should I see in Lisbon?")
        assert await _title(client, alice, session_id) == "New chat"


async def test_a_failed_title_is_tried_again_at_the_next_turn(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.reply = _titling(RuntimeError("the title call fails"))
    async with serve_app(llm_settings(auto_title=True)) as client:
        session_id = await new_session(client, alice)
        await answered(client, alice, session_id, "first")
        assert await _title(client, alice, session_id) == "New chat"
        fake_llm.reply = _titling('Title: "Lisbon in spring!"')
        await answered(client, alice, session_id, "second")
        await _titled(client, alice, session_id, "Lisbon in spring")


async def test_the_title_is_streamed_before_the_end_and_mirrored(
    ragflow_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    fake_ragflow: FakeRagflow,
    alice: Headers,
) -> None:
    fake_llm.reply = _titling("「里斯本春游」", " ".join(f"w{i}" for i in range(30)))
    fake_llm.chunk_delay = 0.03
    async with (
        uvicorn_server(ragflow_settings(auto_title=True)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        created = (await http.post("/api/sessions", json={}, headers=alice)).json()
        async with http.stream(
            "POST",
            f"/api/sessions/{created['session_id']}/messages",
            json={"content": "里斯本春天有什么好玩的\uff1f", "stream": True},
            headers=alice,
        ) as response:
            names = [(e.name, e.data) async for e in read_events(response)]
        assert ("title", {"title": "里斯本春游"}) in names
        assert [name for name, _ in names].index("title") < len(names) - 1
        assert names[-1][0] == "message_end"
        assert await _title(http, alice, created["session_id"]) == "里斯本春游"
    assert fake_ragflow.sessions[created["ragflow_session_id"]]["name"] == "里斯本春游"
