"""Feedback on answers (api-v2 §3): up or down with a comment, changed, removed; shown on the
message, audited, counted, listed for admins."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.helpers import Headers, answered, auth, new_session


async def _rated(
    client: AsyncClient, headers: Headers, session_id: str, message_id: int, **body: Any
) -> Any:
    return await client.put(
        f"/api/sessions/{session_id}/messages/{message_id}/feedback", json=body, headers=headers
    )


async def test_rate_change_and_remove_an_answer(client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(client, alice)
    reply = (await answered(client, alice, session_id, "one"))["assistant_message"]
    up = await _rated(client, alice, session_id, reply["id"], rating="up")
    assert up.status_code == 200, up.text
    assert up.json()["feedback"]["rating"] == "up"
    assert up.json()["feedback"]["comment"] is None
    down = await _rated(client, alice, session_id, reply["id"], rating="down", comment="wrong")
    assert down.json()["feedback"]["rating"] == "down"
    assert down.json()["feedback"]["comment"] == "wrong"
    shown = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()["messages"]
    assert shown[1]["feedback"] == down.json()["feedback"]
    assert shown[0]["feedback"] is None
    path = f"/api/sessions/{session_id}/messages/{reply['id']}/feedback"
    assert (await client.delete(path, headers=alice)).status_code == 204
    assert (await client.delete(path, headers=alice)).status_code == 204  # nothing left: 204
    shown = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()["messages"]
    assert shown[1]["feedback"] is None


async def test_feedback_refuses_what_is_not_your_answer(
    client: AsyncClient, alice: Headers, bob: Headers
) -> None:
    session_id = await new_session(client, alice)
    pair = await answered(client, alice, session_id, "one")
    reply_id = pair["assistant_message"]["id"]
    cases = [
        (alice, pair["user_message"]["id"], {"rating": "up"}, 422),  # a question
        (alice, 10**12, {"rating": "up"}, 404),
        (bob, reply_id, {"rating": "up"}, 404),
        (alice, reply_id, {"rating": "sideways"}, 422),
        (alice, reply_id, {"rating": "up", "comment": "x" * 2001}, 422),
        (alice, reply_id, {"comment": "no rating"}, 422),
        (alice, reply_id, {"rating": "up", "extra": 1}, 422),
    ]
    for headers, message_id, body, status in cases:
        response = await _rated(client, headers, session_id, message_id, **body)
        assert response.status_code == status, (message_id, body, response.text)
        assert "detail" in response.json()
    assert (
        await _rated(client, alice, session_id, reply_id, rating="up", comment="x" * 2000)
    ).status_code == 200
    other = await new_session(client, alice)
    elsewhere = await _rated(client, alice, other, reply_id, rating="up")
    assert elsewhere.status_code == 404
    gone = f"/api/sessions/{session_id}/messages/{reply_id}/feedback"
    assert (await client.delete(gone, headers=bob)).status_code == 404


async def test_feedback_is_audited_counted_and_listed_for_admins(
    client: AsyncClient, alice: Headers
) -> None:
    admin = auth("root-admin", admin=True)
    session_id = await new_session(client, alice)
    owner = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()["user_id"]
    replies = [(await answered(client, alice, session_id, q))["assistant_message"] for q in "abc"]

    async def counted(rating: str) -> float:
        text = (await client.get("/metrics")).text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith(f'session_feedback_total{{rating="{rating}"}}')
        )
        return float(line.split()[-1])

    ups, downs = await counted("up"), await counted("down")
    await _rated(client, alice, session_id, replies[0]["id"], rating="up")
    await _rated(client, alice, session_id, replies[1]["id"], rating="down", comment="meh")
    await _rated(client, alice, session_id, replies[2]["id"], rating="up")
    assert (await counted("up"), await counted("down")) == (ups + 2, downs + 1)

    audit = (
        await client.get("/api/audit", params={"session_id": session_id}, headers=admin)
    ).json()["items"]
    actions = [(e["action"], e["detail"].get("rating")) for e in audit]
    assert actions[:3] == [("feedback_set", "up"), ("feedback_set", "down"), ("feedback_set", "up")]

    listed = (await client.get("/api/feedback", params={"user_id": owner}, headers=admin)).json()
    assert [i["message_id"] for i in listed["items"]] == [r["id"] for r in reversed(replies)]
    assert listed["items"][1]["comment"] == "meh"
    assert listed["items"][0]["session_id"] == session_id
    downs_only = (
        await client.get(
            "/api/feedback", params={"user_id": owner, "rating": "down"}, headers=admin
        )
    ).json()["items"]
    assert [i["message_id"] for i in downs_only] == [replies[1]["id"]]
    # paged: newest first, no gaps or repeats
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"user_id": owner, "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/feedback", params=params, headers=admin)).json()
        seen += [i["message_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in reversed(replies)]
    assert (await client.get("/api/feedback", headers=alice)).status_code == 403
    bad = await client.get("/api/feedback", params={"cursor": "nope"}, headers=admin)
    assert bad.status_code == 422
