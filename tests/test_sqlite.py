"""The zero-configuration database: the session writes, a turn and strict input behave on
SQLite as on MariaDB (SQLite has no row locks: `FOR UPDATE` is left out there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from session_service.config import Settings
from session_service.db.engine import create_engine
from session_service.db.migrate import upgrade_to_head
from tests.conftest import serve_app
from tests.helpers import auth


async def test_sessions_and_a_turn_on_sqlite(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    engine = create_engine(settings)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
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
