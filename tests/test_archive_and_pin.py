"""Archive and pin (api-v2 §4): the list leaves archived sessions out unless asked for them
alone, shows pinned ones first, and pages without gaps or repeats."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.helpers import Headers, auth, new_session


async def _listed(client: AsyncClient, headers: Headers, **params: Any) -> list[str]:
    """Every session id of the list, page by page (2 a page)."""
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2, **params} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/sessions", params=query, headers=headers)).json()
        seen += [item["session_id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            return seen


async def _patched(client: AsyncClient, headers: Headers, session_id: str, **body: Any) -> Any:
    response = await client.patch(f"/api/sessions/{session_id}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_archived_sessions_leave_the_list_and_pinned_ones_come_first(
    client: AsyncClient,
) -> None:
    owner = auth("filing-user")
    ids = [await new_session(client, owner, title=f"s{i}") for i in range(6)]  # s5 newest
    before = await _patched(client, owner, ids[1], title="renamed")  # now the newest
    assert (before["archived"], before["pinned"]) == (False, False)
    pinned = await _patched(client, owner, ids[0], pinned=True)
    assert pinned["pinned"] is True
    assert (
        pinned["updated_at"]
        == (await client.get(f"/api/sessions/{ids[0]}", headers=owner)).json()["updated_at"]
    )
    await _patched(client, owner, ids[3], pinned=True)
    archived = await _patched(client, owner, ids[2], archived=True)
    assert archived["archived"] is True
    # pinned first (most recently updated first among them), archived left out
    assert await _listed(client, owner) == [ids[3], ids[0], ids[1], ids[5], ids[4]]
    assert await _listed(client, owner, archived="true") == [ids[2]]
    # pinning does not move updated_at: the unpinned keep their order
    await _patched(client, owner, ids[3], pinned=False)
    assert await _listed(client, owner) == [ids[0], ids[1], ids[5], ids[4], ids[3]]
    await _patched(client, owner, ids[2], archived=False)
    assert ids[2] in await _listed(client, owner)
    assert await _listed(client, owner, archived="true") == []


async def test_filing_is_audited_and_checked(client: AsyncClient, alice: Headers) -> None:
    admin = auth("filing-admin", admin=True)
    session_id = await new_session(client, alice)
    await _patched(client, alice, session_id, archived=True, pinned=True)
    await _patched(client, alice, session_id, archived=True)  # no change: no event
    events = (
        await client.get("/api/audit", params={"session_id": session_id}, headers=admin)
    ).json()["items"]
    assert sorted((e["action"], e["detail"]) for e in events if "ed" in e["action"]) == [
        ("session.archived", {"archived": True}),
        ("session.created", {"title": "New chat"}),
        ("session.pinned", {"pinned": True}),
    ]
    for body in ({"archived": "yes"}, {"pinned": 1}, {"archived": None, "pinned": "true"}):
        refused = await client.patch(f"/api/sessions/{session_id}", json=body, headers=alice)
        assert refused.status_code == 422, body
    assert (await client.get("/api/sessions?archived=maybe", headers=alice)).status_code == 422


async def test_paging_has_no_gaps_or_repeats_while_pins_change(client: AsyncClient) -> None:
    owner = auth("paging-pins")
    ids = [await new_session(client, owner) for _ in range(7)]
    for session_id in ids[::3]:
        await _patched(client, owner, session_id, pinned=True)
    first = (await client.get("/api/sessions", params={"limit": 3}, headers=owner)).json()
    # between pages, a session not yet listed is pinned, and a listed one unpinned
    shown = [item["session_id"] for item in first["items"]]
    later = [session_id for session_id in ids if session_id not in shown]
    await _patched(client, owner, shown[0], pinned=False)
    rest = (
        await client.get(
            "/api/sessions", params={"limit": 10, "cursor": first["next_cursor"]}, headers=owner
        )
    ).json()
    following = [item["session_id"] for item in rest["items"]]
    assert not set(following) & set(shown[1:])  # no repeats of what kept its place
    assert set(later) <= set(following)  # no gaps among those that kept theirs
