"""A 2xx is sent only after its write is committed: a read on another connection right after
the answer sees the write, even when the commit is slow; a commit that fails is no 2xx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from session_service.db.models import AuditEvent, ChatSession
from tests.helpers import auth
from tests.sse import uvicorn_server

ROUNDS = 40
SLOW_COMMIT_SECONDS = 0.05


@pytest.fixture
def slow_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `AsyncSession.commit` of this process waits first: an answer sent before its
    commit would be seen stale by a read on another connection."""
    commit = AsyncSession.commit

    async def slow(self: AsyncSession) -> None:
        await asyncio.sleep(SLOW_COMMIT_SECONDS)
        await commit(self)

    monkeypatch.setattr(AsyncSession, "commit", slow)


@pytest.fixture
async def server(
    make_settings: Callable[..., Settings], slow_commits: None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a real uvicorn: the client has its answer when the server sent it."""
    async with (
        uvicorn_server(make_settings()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


async def _session_row(db: async_sessionmaker[AsyncSession], session_id: str) -> Any:
    async with db() as reader:  # its own connection; reads commit nothing
        return (
            await reader.execute(
                select(ChatSession.title, ChatSession.context).where(
                    ChatSession.session_id == session_id
                )
            )
        ).first()


async def _audit_actions(db: async_sessionmaker[AsyncSession], session_id: str) -> list[str]:
    async with db() as reader:
        rows = await reader.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.session_id == session_id)
            .order_by(AuditEvent.id)  # type: ignore[arg-type]
        )
        return list(rows)


async def test_every_write_is_committed_before_its_answer(
    server: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    headers = auth(f"committed-{uuid.uuid4().hex[:8]}", admin=True)
    stale: list[str] = []
    for round_ in range(ROUNDS):
        created = await server.post("/api/sessions", json={"title": f"t{round_}"}, headers=headers)
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        if await _session_row(db, session_id) is None:
            stale.append(f"create {round_}")

        patched = await server.patch(
            f"/api/sessions/{session_id}",
            json={"title": f"renamed {round_}", "context": {"round": round_}},
            headers=headers,
        )
        assert patched.status_code == 200, patched.text
        row = await _session_row(db, session_id)
        if row is None or tuple(row) != (f"renamed {round_}", {"round": round_}):
            stale.append(f"patch {round_}")

        deleted = await server.delete(f"/api/sessions/{session_id}", headers=headers)
        assert deleted.status_code == 204
        if await _session_row(db, session_id) is not None:
            stale.append(f"delete {round_}")
        # The audit rows were committed with their changes.
        if await _audit_actions(db, session_id) != [
            "session.created",
            "session.renamed",
            "session.context_replaced",
            "session.deleted",
        ]:
            stale.append(f"audit {round_}")
        # Read right after the 204: gone, and no agent built for it.
        again = await server.get(f"/api/sessions/{session_id}", headers=headers)
        assert again.status_code == 404, again.text
        status = await server.get("/api/sessions/status", headers=headers)
        assert session_id not in {a["session_id"] for a in status.json()["agents"]}
    assert stale == []


async def test_a_commit_that_fails_answers_no_2xx(
    make_settings: Callable[..., Settings],
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = auth(f"failed-commit-{uuid.uuid4().hex[:8]}")
    async with (
        uvicorn_server(make_settings()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        created = await client.post("/api/sessions", json={"title": "kept"}, headers=headers)
        session_id = created.json()["session_id"]

        async def fail(self: AsyncSession) -> None:
            await self.rollback()
            raise sa_exc.OperationalError("COMMIT", {}, Exception(2013, "lost connection"))

        monkeypatch.setattr(AsyncSession, "commit", fail)
        attempts = [
            await client.post(
                "/api/sessions", json={"session_id": "never-" + session_id[:20]}, headers=headers
            ),
            await client.patch(
                f"/api/sessions/{session_id}", json={"title": "lost"}, headers=headers
            ),
            await client.delete(f"/api/sessions/{session_id}", headers=headers),
        ]
        monkeypatch.undo()
        assert [r.status_code for r in attempts] == [503, 503, 503]
        assert all(r.json()["detail"] for r in attempts)
        assert await _session_row(db, "never-" + session_id[:20]) is None
        row = await _session_row(db, session_id)
        assert row is not None
        assert row.title == "kept"
