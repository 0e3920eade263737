"""The sessions API over HTTP, on MariaDB."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.db.models import AuditEvent, ChatMessage, ChatSession
from tests.helpers import Headers, add_messages

SESSION_FIELDS = {
    "session_id",
    "user_id",
    "title",
    "created_at",
    "updated_at",
    "context",
    "ragflow_session_id",
    "message_count",
    "active_message_id",
    "archived",
    "pinned",
    "agent_active",
}


async def test_create_returns_the_session(client: AsyncClient, alice: Headers) -> None:
    response = await client.post(
        "/api/sessions", json={"title": "Trip", "context": {"lang": "en"}}, headers=alice
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == SESSION_FIELDS
    assert body["title"] == "Trip"
    assert body["context"] == {"lang": "en"}
    assert body["message_count"] == 0
    assert body["ragflow_session_id"] is None
    for field in ("created_at", "updated_at"):
        stamp = datetime.fromisoformat(body[field])
        assert stamp.utcoffset() is not None
        assert stamp.utcoffset().total_seconds() == 0
    read = await client.get(f"/api/sessions/{body['session_id']}", headers=alice)
    assert read.status_code == 200
    assert read.json()["created_at"] == body["created_at"]


@pytest.mark.parametrize("body", [{}, None], ids=["empty object", "no body"])
async def test_create_with_defaults(
    client: AsyncClient, alice: Headers, body: dict[str, object] | None
) -> None:
    response = await client.post("/api/sessions", json=body, headers=alice)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "New chat"
    assert response.json()["context"] == {}
    assert len(response.json()["session_id"]) == 32


async def test_create_is_idempotent_for_the_owner(
    client: AsyncClient, alice: Headers, bob: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    body = {"session_id": "idem-1a", "title": "A", "context": {"k": [1, "é"]}}
    first = await client.post("/api/sessions", json=body, headers=alice)
    again = await client.post("/api/sessions", json=body, headers=alice)
    only_id = await client.post("/api/sessions", json={"session_id": "idem-1a"}, headers=alice)
    other = await client.post("/api/sessions", json={"session_id": "idem-1a"}, headers=bob)
    assert [r.status_code for r in (first, again, only_id, other)] == [201, 200, 200, 409]
    assert again.json() == first.json() == only_id.json()
    assert "detail" in other.json()
    # The same id with another title or context is another request: refused, nothing changed.
    for changed in ({"title": "B"}, {"context": {}}, {"title": "A", "context": {"k": [1]}}):
        refused = await client.post(
            "/api/sessions", json={"session_id": "idem-1a", **changed}, headers=alice
        )
        assert refused.status_code == 409, changed
        assert "PATCH" in refused.json()["detail"]
    read = await client.get("/api/sessions/idem-1a", headers=alice)
    assert (read.json()["title"], read.json()["context"]) == ("A", {"k": [1, "é"]})
    async with db() as session:
        count = await session.scalar(
            select(func.count()).select_from(ChatSession).where(ChatSession.session_id == "idem-1a")
        )
    assert count == 1


async def test_concurrent_idempotent_creates_make_one_session(
    client: AsyncClient, alice: Headers
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/api/sessions", json={"session_id": "race-1"}, headers=alice)
            for _ in range(8)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 7 + [201]
    assert len({r.json()["created_at"] for r in responses}) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"session_id": "status"},
        {"session_id": "cleanup"},
        {"session_id": ""},
        {"session_id": "a" * 65},
        {"session_id": "has space"},
        {"session_id": "slash/no"},
        {"title": "x" * 501},
        {"title": 5},
        {"context": "not an object"},
        {"context": [1, 2]},
        {"unknown": 1},
    ],
)
async def test_create_rejects_bad_input(
    client: AsyncClient, alice: Headers, body: dict[str, object]
) -> None:
    response = await client.post("/api/sessions", json=body, headers=alice)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    listed = await client.get("/api/sessions", headers=alice)
    assert listed.json()["items"] == []


async def test_create_rejects_broken_json(client: AsyncClient, alice: Headers) -> None:
    response = await client.post(
        "/api/sessions",
        content=b'{"title": ',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_title_of_500_characters_is_accepted(client: AsyncClient, alice: Headers) -> None:
    title = "𝄞" * 500
    response = await client.post("/api/sessions", json={"title": title}, headers=alice)
    assert response.status_code == 201
    read = await client.get(f"/api/sessions/{response.json()['session_id']}", headers=alice)
    assert read.json()["title"] == title


async def test_four_byte_unicode_round_trips(
    client: AsyncClient, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    text = "music 𝄞 and 😀 and 汉字 and e\u0301"
    created = await client.post(
        "/api/sessions",
        json={"title": text, "context": {"note": text, text: [text]}},
        headers=alice,
    )
    session_id = created.json()["session_id"]
    await add_messages(db, session_id, [text, text + "!"])
    read = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert read["title"] == text
    assert read["context"] == {"note": text, text: [text]}
    assert [m["content"] for m in read["messages"]] == [text, text + "!"]
    async with db() as session:
        row = await session.get(ChatSession, session_id)
        stored = await session.scalar(
            select(ChatMessage.content).where(
                ChatMessage.session_id == session_id, ChatMessage.seq == 1
            )
        )
    assert row is not None
    assert row.title.encode() == text.encode()
    assert stored is not None
    assert stored.encode() == text.encode()


async def test_list_pages_without_gaps_or_repeats(
    client: AsyncClient, alice: Headers, bob: Headers
) -> None:
    created = []
    for i in range(7):
        response = await client.post("/api/sessions", json={"title": f"s{i}"}, headers=alice)
        created.append(response.json()["session_id"])
    await client.post("/api/sessions", json={"title": "not alice's"}, headers=bob)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/sessions", params=params, headers=alice)).json()
        pages += 1
        seen.extend(item["session_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))


async def test_list_orders_by_last_update(client: AsyncClient, alice: Headers) -> None:
    ids = [
        (await client.post("/api/sessions", json={"title": str(i)}, headers=alice)).json()[
            "session_id"
        ]
        for i in range(3)
    ]
    await client.patch(f"/api/sessions/{ids[0]}", json={"title": "renamed"}, headers=alice)
    listed = (await client.get("/api/sessions", headers=alice)).json()
    assert [item["session_id"] for item in listed["items"]] == [ids[0], ids[2], ids[1]]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "%%%"}, {"cursor": "e30"}]
)
async def test_list_rejects_bad_paging(
    client: AsyncClient, alice: Headers, params: dict[str, object]
) -> None:
    response = await client.get("/api/sessions", params=params, headers=alice)
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_read_returns_the_latest_messages_oldest_first(
    client: AsyncClient, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
    await add_messages(db, session_id, [f"m{i}" for i in range(1, 8)])

    full = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert [m["content"] for m in full["messages"]] == [f"m{i}" for i in range(1, 8)]
    assert full["has_more_messages"] is False
    assert full["message_count"] == 7
    assert [m["role"] for m in full["messages"][:2]] == ["user", "assistant"]
    assert set(full["messages"][0]) == {
        "id",
        "session_id",
        "parent_id",
        "sibling_ids",
        "role",
        "content",
        "timestamp",
        "metadata",
        "feedback",
    }

    latest = (
        await client.get(f"/api/sessions/{session_id}", params={"messages_limit": 3}, headers=alice)
    ).json()
    assert [m["content"] for m in latest["messages"]] == ["m5", "m6", "m7"]
    assert latest["has_more_messages"] is True

    none = (
        await client.get(f"/api/sessions/{session_id}", params={"messages_limit": 0}, headers=alice)
    ).json()
    assert none["messages"] == []
    assert none["has_more_messages"] is True


@pytest.mark.parametrize("limit", [-1, 501, "many"])
async def test_read_rejects_bad_messages_limit(
    client: AsyncClient, alice: Headers, limit: object
) -> None:
    session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
    response = await client.get(
        f"/api/sessions/{session_id}", params={"messages_limit": limit}, headers=alice
    )
    assert response.status_code == 422


async def test_messages_page_to_older_without_gaps(
    client: AsyncClient, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
    await add_messages(db, session_id, [f"m{i}" for i in range(1, 11)])
    pages: list[list[str]] = []
    before = None
    while True:
        params: dict[str, str | int] = {"limit": 4}
        if before:
            params["before"] = before
        page = (
            await client.get(f"/api/sessions/{session_id}/messages", params=params, headers=alice)
        ).json()
        pages.append([m["content"] for m in page["items"]])
        before = page["next_cursor"]
        if before is None:
            break
    assert pages == [["m7", "m8", "m9", "m10"], ["m3", "m4", "m5", "m6"], ["m1", "m2"]]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"before": "bm90LWpzb24"}, {"before": "eyJiZWZvcmUiOi0xfQ"}],
)
async def test_messages_rejects_bad_paging(
    client: AsyncClient, alice: Headers, params: dict[str, object]
) -> None:
    session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
    response = await client.get(
        f"/api/sessions/{session_id}/messages", params=params, headers=alice
    )
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_patch_renames_and_replaces_context(client: AsyncClient, alice: Headers) -> None:
    created = (
        await client.post(
            "/api/sessions", json={"title": "old", "context": {"a": 1}}, headers=alice
        )
    ).json()
    session_id = created["session_id"]
    renamed = await client.patch(
        f"/api/sessions/{session_id}", json={"title": "new"}, headers=alice
    )
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "new"
    assert renamed.json()["context"] == {"a": 1}
    assert renamed.json()["updated_at"] > created["updated_at"]
    recontexted = await client.patch(
        f"/api/sessions/{session_id}", json={"context": {"b": 2}}, headers=alice
    )
    assert recontexted.json()["title"] == "new"
    assert recontexted.json()["context"] == {"b": 2}
    read = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert read["title"] == "new"
    assert read["context"] == {"b": 2}


async def test_a_context_is_compared_as_json_not_as_python_values(
    client: AsyncClient, alice: Headers
) -> None:
    """Python's == takes `true` for `1` and `1.0` for `1`; JSON does not."""
    stored = {"k": 1, "f": 0, "x": 1}
    created = await client.post(
        "/api/sessions", json={"session_id": "json-eq", "context": stored}, headers=alice
    )
    assert created.status_code == 201
    repeated = await client.post(
        "/api/sessions",
        json={"session_id": "json-eq", "context": {**stored, "k": True}},
        headers=alice,
    )
    assert repeated.status_code == 409
    changed = {"k": True, "f": False, "x": 1.0}
    patched = await client.patch("/api/sessions/json-eq", json={"context": changed}, headers=alice)
    assert patched.json()["context"] == changed
    read = (await client.get("/api/sessions/json-eq", headers=alice)).json()
    assert read["context"] == changed
    assert [type(read["context"][k]) for k in ("k", "f", "x")] == [bool, bool, float]
    assert read["updated_at"] > created.json()["updated_at"]


async def test_patch_that_changes_nothing_leaves_the_session_as_it_was(
    client: AsyncClient, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    created = (
        await client.post(
            "/api/sessions", json={"title": "same", "context": {"a": 1}}, headers=alice
        )
    ).json()
    session_id = created["session_id"]
    for body in ({}, {"title": "same"}, {"context": {"a": 1}}, {"title": None, "context": None}):
        response = await client.patch(f"/api/sessions/{session_id}", json=body, headers=alice)
        assert response.status_code == 200, body
        assert response.json()["updated_at"] == created["updated_at"], body
    read = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert read["updated_at"] == created["updated_at"]
    async with db() as session:
        actions = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.session_id == session_id)
        )
        assert list(actions) == ["session.created"]


@pytest.mark.parametrize(
    "body",
    [{"title": "x" * 501}, {"title": ""}, {"title": "  "}, {"context": 3}, {"session_id": "other"}],
)
async def test_patch_rejects_bad_input(
    client: AsyncClient, alice: Headers, body: dict[str, object]
) -> None:
    created = (await client.post("/api/sessions", json={"title": "keep"}, headers=alice)).json()
    response = await client.patch(
        f"/api/sessions/{created['session_id']}", json=body, headers=alice
    )
    assert response.status_code == 422
    read = (await client.get(f"/api/sessions/{created['session_id']}", headers=alice)).json()
    assert read["title"] == "keep"
    assert read["updated_at"] == created["updated_at"]


async def test_delete_removes_session_and_messages(
    client: AsyncClient, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
    await add_messages(db, session_id, ["a", "b", "c"])
    response = await client.delete(f"/api/sessions/{session_id}", headers=alice)
    assert response.status_code == 204
    assert response.content == b""
    async with db() as session:
        sessions = await session.scalar(
            select(func.count())
            .select_from(ChatSession)
            .where(ChatSession.session_id == session_id)
        )
        messages = await session.scalar(
            select(func.count())
            .select_from(ChatMessage)
            .where(ChatMessage.session_id == session_id)
        )
    assert (sessions, messages) == (0, 0)
    assert (await client.get(f"/api/sessions/{session_id}", headers=alice)).status_code == 404
    assert (await client.delete(f"/api/sessions/{session_id}", headers=alice)).status_code == 404


VERBS = [
    ("GET", "/api/sessions/{id}", None),
    ("PATCH", "/api/sessions/{id}", {"title": "mine now"}),
    ("DELETE", "/api/sessions/{id}", None),
    ("GET", "/api/sessions/{id}/messages", None),
]


@pytest.mark.parametrize(("method", "path", "body"), VERBS)
async def test_another_users_session_is_not_found(
    client: AsyncClient,
    alice: Headers,
    bob: Headers,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    session_id = (
        await client.post("/api/sessions", json={"title": "alice's"}, headers=alice)
    ).json()["session_id"]
    foreign = await client.request(method, path.format(id=session_id), json=body, headers=bob)
    unknown = await client.request(
        method, path.format(id="no-such-session"), json=body, headers=bob
    )
    assert foreign.status_code == unknown.status_code == 404
    assert (
        foreign.json()
        == unknown.json()
        == {
            "detail": "Session not found",
            "code": "session_not_found",
        }
    )
    still = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert still["title"] == "alice's"


@pytest.mark.parametrize(("method", "path", "body"), VERBS)
async def test_malformed_session_id_is_rejected(
    client: AsyncClient, alice: Headers, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = await client.request(method, path.format(id="x" * 65), json=body, headers=alice)
    assert response.status_code == 422
