"""The audit log: written with each change, kept after the session is gone, read by admins."""

from __future__ import annotations

from httpx import AsyncClient

from tests.helpers import auth

ADMIN = auth("audit-admin", admin=True)


async def test_a_sessions_life_is_audited_and_outlives_it(client: AsyncClient) -> None:
    owner = "carol-audit"
    carol = auth(owner)
    session_id = (
        await client.post("/api/sessions", json={"title": "first"}, headers=carol)
    ).json()["session_id"]
    await client.patch(f"/api/sessions/{session_id}", json={"title": "second"}, headers=carol)
    await client.patch(f"/api/sessions/{session_id}", json={"context": {"a": 1}}, headers=carol)
    await client.post(f"/api/sessions/{session_id}/messages", json={"content": "hi"}, headers=carol)
    assert (await client.delete(f"/api/sessions/{session_id}", headers=carol)).status_code == 204
    await client.post("/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=ADMIN)

    page = await client.get("/api/audit", params={"session_id": session_id}, headers=ADMIN)
    assert page.status_code == 200
    items = page.json()["items"]
    assert [item["action"] for item in items] == [
        "session.deleted",
        "session.context_replaced",
        "session.renamed",
        "session.created",
    ]
    assert {item["actor"] for item in items} == {owner}
    assert items[2]["detail"] == {"from": "first", "to": "second"}
    assert items[0]["detail"]["messages"] == 2
    assert set(items[0]) == {"id", "at", "actor", "action", "session_id", "user_id", "detail"}
    by_user = (await client.get("/api/audit", params={"user_id": owner}, headers=ADMIN)).json()
    assert [item["id"] for item in by_user["items"]] == [item["id"] for item in items]
    everything = (await client.get("/api/audit", params={"limit": 500}, headers=ADMIN)).json()
    released = [i for i in everything["items"] if i["action"] == "agents.released"]
    assert released[0]["actor"] == "audit-admin"


async def test_audit_pages_and_needs_an_admin(client: AsyncClient) -> None:
    dave = auth("dave-audit")
    for index in range(5):
        await client.post("/api/sessions", json={"title": f"t{index}"}, headers=dave)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"user_id": "dave-audit", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/audit", params=params, headers=ADMIN)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    assert (await client.get("/api/audit", headers=dave)).status_code == 403
    assert (await client.get("/api/audit")).status_code == 401
    assert (await client.get("/api/audit", params={"limit": 0}, headers=ADMIN)).status_code == 422
