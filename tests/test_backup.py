"""export / import as a user runs them: a round trip through MariaDB and SQLite that keeps
ids, order, timestamps and 4-byte characters, and an import that is idempotent."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from httpx import AsyncClient

from session_service.db.search_terms import owner_key, terms
from tests.helpers import auth, scratch_database
from tests.processes import CLI, clean_env


def cli(args: list[str], database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=clean_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def second_mariadb(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "ss_restore") as url:
        yield url


async def test_round_trip_through_mariadb_and_sqlite(
    client: AsyncClient, migrated_url: str, second_mariadb: str, tmp_path: Path
) -> None:
    owner = f"eve-{uuid.uuid4().hex[:8]}"
    eve = auth(owner)
    for title in ("trip 🗺️", "music 𝄞"):
        session_id = (
            await client.post(
                "/api/sessions", json={"title": title, "context": {"k": "ü😀"}}, headers=eve
            )
        ).json()["session_id"]
        for content in ("first 😀", "second 𝄞", "third"):
            await client.post(
                f"/api/sessions/{session_id}/messages", json={"content": content}, headers=eve
            )
    await client.post("/api/sessions", json={"title": "not eve's"}, headers=auth("mallory"))

    original = tmp_path / "original.jsonl"
    exported = cli(["export", "--user", owner, "--out", str(original)], migrated_url, tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 sessions, 12 messages" in exported.stderr
    records = [json.loads(line) for line in original.read_text(encoding="utf-8").splitlines()]
    assert [r["type"] for r in records] == (["session"] + ["message"] * 6) * 2
    assert "𝄞" in original.read_text(encoding="utf-8")  # stored as is, not escaped

    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
    for target in (sqlite_url, second_mariadb):
        assert cli(["migrate"], target, tmp_path).returncode == 0
        first = cli(["import", str(original)], target, tmp_path)
        assert first.returncode == 0, first.stderr
        assert "imported 2 sessions, 12 messages" in first.stderr
        assert _indexed(target) == {  # searchable: each message's terms, under its owner
            (r["id"], term, owner_key(owner))
            for r in records
            if r["type"] == "message"
            for term in terms(r["content"])
        }
        again = cli(["import", str(original)], target, tmp_path)
        assert (
            "imported 0 sessions, 0 messages; already there: 2 sessions, 12 messages"
            in again.stderr
        )
        copy = tmp_path / "copy.jsonl"
        assert cli(["export", "--out", str(copy)], target, tmp_path).returncode == 0
        assert copy.read_text(encoding="utf-8") == original.read_text(encoding="utf-8"), target


def _indexed(url: str) -> set[tuple[int, str, int]]:
    engine = sa.create_engine(url.replace("+aiomysql", "+pymysql").replace("+aiosqlite", ""))
    with engine.connect() as db:
        rows = db.execute(sa.text("SELECT message_id, term, owner FROM search_terms")).all()
    engine.dispose()
    return {(message_id, term, owner) for message_id, term, owner in rows}


async def test_one_session_and_a_broken_file(
    client: AsyncClient, migrated_url: str, tmp_path: Path
) -> None:
    frank = auth(f"frank-{uuid.uuid4().hex[:8]}")
    session_id = (await client.post("/api/sessions", json={}, headers=frank)).json()["session_id"]
    await client.post(f"/api/sessions/{session_id}/messages", json={"content": "x"}, headers=frank)
    out = tmp_path / "one.jsonl"
    result = cli(["export", "--session", session_id, "--out", str(out)], migrated_url, tmp_path)
    assert "exported 1 sessions, 2 messages" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text(out.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert cli(["migrate"], sqlite_url, tmp_path).returncode == 0
    failed = cli(["import", str(broken)], sqlite_url, tmp_path)
    assert failed.returncode == 2
    assert "line 4 is not JSON" in failed.stderr


async def test_the_tree_and_the_active_leaf_survive_a_round_trip(
    client: AsyncClient, migrated_url: str, tmp_path: Path
) -> None:
    grace = auth(f"grace-{uuid.uuid4().hex[:8]}")
    session_id = (await client.post("/api/sessions", json={}, headers=grace)).json()["session_id"]
    turns = f"/api/sessions/{session_id}/messages"
    first = (await client.post(turns, json={"content": "one"}, headers=grace)).json()
    second = (await client.post(turns, json={"content": "two"}, headers=grace)).json()
    answer_one = first["assistant_message"]["id"]
    await client.post(turns, json={"content": "two'", "parent_id": answer_one}, headers=grace)
    await client.patch(  # back to the first branch: the active leaf is not the newest message
        f"/api/sessions/{session_id}",
        json={"active_message_id": second["user_message"]["id"]},
        headers=grace,
    )
    rated = await client.put(
        f"{turns}/{answer_one}/feedback", json={"rating": "down", "comment": "ü"}, headers=grace
    )
    assert rated.status_code == 200
    await client.patch(f"/api/sessions/{session_id}", json={"pinned": True}, headers=grace)
    shown = (await client.get(f"/api/sessions/{session_id}", headers=grace)).json()
    assert shown["active_message_id"] == second["assistant_message"]["id"]
    out = tmp_path / "tree.jsonl"
    exported = cli(["export", "--session", session_id, "--out", str(out)], migrated_url, tmp_path)
    assert "exported 1 sessions, 6 messages" in exported.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records[0]["format"] == "session-service/2"
    assert records[0]["active_message_id"] == shown["active_message_id"]
    assert (records[0]["pinned"], records[0]["archived"]) == (True, False)
    parents = {r["id"]: r["parent_id"] for r in records[1:]}
    feedback = {r["id"]: r["feedback"] for r in records[1:] if r["feedback"]}
    assert list(feedback) == [answer_one]
    assert (feedback[answer_one]["rating"], feedback[answer_one]["comment"]) == ("down", "ü")
    assert list(parents.values()).count(answer_one) == 2  # two questions under it

    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'tree.db'}"
    assert cli(["migrate"], sqlite_url, tmp_path).returncode == 0
    assert cli(["import", str(out)], sqlite_url, tmp_path).returncode == 0
    copy = tmp_path / "copy.jsonl"
    assert cli(["export", "--out", str(copy)], sqlite_url, tmp_path).returncode == 0
    assert copy.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


async def test_a_first_format_file_imports_as_one_branch(
    client: AsyncClient, migrated_url: str, tmp_path: Path
) -> None:
    heidi = auth(f"heidi-{uuid.uuid4().hex[:8]}")
    session_id = (await client.post("/api/sessions", json={}, headers=heidi)).json()["session_id"]
    for content in ("one", "two"):
        await client.post(
            f"/api/sessions/{session_id}/messages", json={"content": content}, headers=heidi
        )
    out = tmp_path / "new.jsonl"
    cli(["export", "--session", session_id, "--out", str(out)], migrated_url, tmp_path)
    old = []  # as the first format wrote it: no tree, no feedback
    for line in out.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for name in ("active_message_id", "parent_id", "feedback"):
            record.pop(name, None)
        if record["type"] == "session":
            record["format"] = "session-service/1"
        old.append(json.dumps(record))
    v1 = tmp_path / "v1.jsonl"
    v1.write_text("\n".join(old) + "\n", encoding="utf-8")
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'v1.db'}"
    assert cli(["migrate"], sqlite_url, tmp_path).returncode == 0
    imported = cli(["import", str(v1)], sqlite_url, tmp_path)
    assert "imported 1 sessions, 4 messages" in imported.stderr, imported.stderr
    copy = tmp_path / "copy.jsonl"
    assert cli(["export", "--out", str(copy)], sqlite_url, tmp_path).returncode == 0
    assert copy.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


async def test_an_import_refuses_a_parent_that_is_not_an_earlier_message(
    client: AsyncClient, migrated_url: str, tmp_path: Path
) -> None:
    ivan = auth(f"ivan-{uuid.uuid4().hex[:8]}")
    session_id = (await client.post("/api/sessions", json={}, headers=ivan)).json()["session_id"]
    await client.post(f"/api/sessions/{session_id}/messages", json={"content": "x"}, headers=ivan)
    out = tmp_path / "one.jsonl"
    cli(["export", "--session", session_id, "--out", str(out)], migrated_url, tmp_path)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    records[1]["parent_id"] = records[2]["id"]  # the question under its own answer
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert cli(["migrate"], sqlite_url, tmp_path).returncode == 0
    failed = cli(["import", str(broken)], sqlite_url, tmp_path)
    assert failed.returncode == 2
    assert "is not an earlier message of the session" in failed.stderr
    assert "imported" not in failed.stderr
