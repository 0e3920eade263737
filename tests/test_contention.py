"""Contention is not an outage: a DELETE racing turns, and rows held by another transaction,
answer as busy (409) or are retried, never 503 "database unavailable"."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from session_service.db.contention import Busy, retry_on_contention
from session_service.db.models import ChatSession
from session_service.db.repositories import SessionRepository
from tests.conftest import serve_app
from tests.fakes.tcp_proxy import TcpProxy
from tests.helpers import auth, mysql_connect, new_session, stored, turn

ROUNDS = 40
LOCK_WAIT_SECONDS = 1


@pytest.fixture
def short_lock_waits(migrated_url: str) -> Iterator[None]:
    """Connections opened from now on give up a lock wait after a second (error 1205)."""
    admin = mysql_connect(migrated_url, autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.innodb_lock_wait_timeout")
        (before,) = cursor.fetchone()
        cursor.execute(f"SET GLOBAL innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}")
    try:
        yield
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"SET GLOBAL innodb_lock_wait_timeout = {int(before)}")
        admin.close()


def _no_outage_logged(caplog: pytest.LogCaptureFixture) -> None:
    said = [r.getMessage() for r in caplog.records]
    assert not [line for line in said if "database unavailable" in line], said


async def test_a_delete_racing_turns_never_answers_503(
    llm_client: AsyncClient,
    db: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = auth("racer")
    outcomes: set[tuple[int, int]] = set()
    for round_ in range(ROUNDS):
        session_id = await new_session(llm_client, headers)
        await turn(llm_client, headers, session_id, "warm up")

        async def delete_soon(session_id: str = session_id) -> Any:
            await asyncio.sleep(random.uniform(0, 0.02))
            return await llm_client.delete(f"/api/sessions/{session_id}", headers=headers)

        turned, deleted = await asyncio.gather(
            turn(llm_client, headers, session_id, f"q{round_}", stream=round_ % 2 == 0),
            delete_soon(),
        )
        outcomes.add((turned.status_code, deleted.status_code))
        assert turned.status_code in (201, 404, 409), turned.text
        assert deleted.status_code in (204, 404), deleted.text
        assert await stored(db, session_id) == []  # nothing left behind the delete
    _no_outage_logged(caplog)
    assert {deleted for _, deleted in outcomes} == {204}


async def test_a_patch_racing_a_delete_is_not_found_not_a_500(
    llm_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth("patch-racer")
    seen = set()
    for round_ in range(30):
        session_id = await new_session(llm_client, headers)
        patched, deleted = await asyncio.gather(
            llm_client.patch(
                f"/api/sessions/{session_id}", json={"title": f"t{round_}"}, headers=headers
            ),
            llm_client.delete(f"/api/sessions/{session_id}", headers=headers),
        )
        seen.add((patched.status_code, deleted.status_code))
        assert patched.status_code in (200, 404, 409), patched.text
        assert deleted.status_code == 204
    assert (404, 204) in seen or (200, 204) in seen
    _no_outage_logged(caplog)


async def test_rows_held_elsewhere_answer_busy_not_unavailable(
    short_lock_waits: None,
    make_settings: Callable[..., Settings],
    migrated_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = auth("held-elsewhere")
    async with serve_app(make_settings()) as client:
        session_id = await new_session(client, headers, title="held")
        holder = mysql_connect(migrated_url)
        try:
            with holder.cursor() as cursor:
                cursor.execute(
                    "SELECT * FROM chat_sessions WHERE session_id = %s FOR UPDATE", (session_id,)
                )
            patched = await client.patch(
                f"/api/sessions/{session_id}", json={"title": "new"}, headers=headers
            )
            deleted = await client.delete(f"/api/sessions/{session_id}", headers=headers)
            rejected = await turn(client, headers, session_id, "now?", if_busy="reject")
        finally:
            holder.rollback()
            holder.close()
        for answer in (patched, deleted, rejected):
            assert answer.status_code == 409, answer.text
            assert "concurrent change" in answer.json()["detail"]  # not "another turn"
        # Once the rows are free, the same requests go through.
        assert (await turn(client, headers, session_id, "now")).status_code == 201
        assert (
            await client.delete(f"/api/sessions/{session_id}", headers=headers)
        ).status_code == 204
    _no_outage_logged(caplog)


async def test_a_waiting_turn_retries_past_a_lock_wait(
    short_lock_waits: None,
    make_settings: Callable[..., Settings],
    migrated_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`if_busy: wait`: a claim that lost a lock wait is tried again, whole, until it gets in."""
    caplog.set_level(logging.INFO)
    headers = auth("waits-its-turn")
    async with serve_app(make_settings(turn_lock_timeout_seconds=10)) as client:
        session_id = await new_session(client, headers)
        holder = mysql_connect(migrated_url)
        with holder.cursor() as cursor:
            cursor.execute(
                "SELECT * FROM chat_sessions WHERE session_id = %s FOR UPDATE", (session_id,)
            )

        async def let_go_later() -> None:
            await asyncio.sleep(LOCK_WAIT_SECONDS * 2.5)  # the claim's lock wait fails twice
            holder.rollback()
            holder.close()

        answered, _ = await asyncio.gather(
            turn(client, headers, session_id, "after you"), let_go_later()
        )
        assert answered.status_code == 201, answered.text
        assert answered.json()["user_message"]["content"] == "after you"
    assert any("contention" in r.getMessage() for r in caplog.records)
    _no_outage_logged(caplog)


async def test_a_real_deadlock_is_retried_then_busy(migrated_url: str) -> None:
    """Two transactions taking two rows in opposite orders: the victim (1213) runs again."""
    setup = mysql_connect(migrated_url, autocommit=True)
    with setup.cursor() as cursor:
        for key in ("dl-a", "dl-b"):
            cursor.execute(
                "INSERT IGNORE INTO chat_sessions (session_id, user_id, title, context, "
                "message_count, created_at, updated_at) "
                "VALUES (%s, 'dl', 't', '{}', 0, NOW(6), NOW(6))",
                (key,),
            )
    setup.close()
    attempts = 0

    async def crossing(first: str, second: str, gate: asyncio.Event) -> None:
        nonlocal attempts
        attempts += 1
        conn = await asyncio.to_thread(mysql_connect, migrated_url)
        try:
            lock = "UPDATE chat_sessions SET title = 'x' WHERE session_id = %s"
            await asyncio.to_thread(conn.cursor().execute, lock, (first,))
            gate.set()
            await asyncio.sleep(0.1)
            await asyncio.to_thread(conn.cursor().execute, lock, (second,))
            await asyncio.to_thread(conn.commit)
        except Exception as exc:
            await asyncio.to_thread(conn.rollback)
            raise OperationalError("UPDATE", {}, exc) from exc
        finally:
            conn.close()

    gate_a, gate_b = asyncio.Event(), asyncio.Event()
    results = await asyncio.gather(
        retry_on_contention(lambda: crossing("dl-a", "dl-b", gate_a), "test"),
        retry_on_contention(lambda: crossing("dl-b", "dl-a", gate_b), "test"),
        return_exceptions=True,
    )
    assert results == [None, None]
    assert attempts >= 3  # one of them lost a deadlock and ran again

    async def always_deadlocked() -> None:
        raise OperationalError("UPDATE", {}, Exception(1213, "Deadlock found"))

    with pytest.raises(Busy):
        await retry_on_contention(always_deadlocked, "test", attempts=2)


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("INSERT", {}, Exception(4025, "CONSTRAINT `context` failed")),
        DataError("INSERT", {}, Exception(1406, "Data too long for column 'title'")),
    ],
    ids=["check-constraint", "too-long"],
)
async def test_a_value_the_database_refuses_is_invalid_input_not_an_outage(
    client: AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    async def refuse(_self: SessionRepository, _row: ChatSession) -> None:
        raise error

    monkeypatch.setattr(SessionRepository, "insert", refuse)
    response = await client.post("/api/sessions", json={}, headers=auth("refused-value"))
    assert response.status_code == 422, response.text
    assert "cannot be stored" in response.json()["detail"]
    _no_outage_logged(caplog)


async def test_a_transaction_reads_what_is_committed_when_it_reads(
    client: AsyncClient, db: async_sessionmaker[AsyncSession], migrated_url: str
) -> None:
    """READ COMMITTED: a read after the row lock sees a message removed after the
    transaction's first read (REPEATABLE READ would show it from an older snapshot, and a
    branch switch could make it the active leaf: the soak found one)."""
    headers = auth("isolation-user")
    session_id = await new_session(client, headers)
    assert (await turn(client, headers, session_id, "one")).status_code == 201
    async with db() as session, session.begin():
        repository = SessionRepository.from_session(session)
        assert await repository.get(session_id) is not None  # the first read
        other = mysql_connect(migrated_url)
        try:
            with other.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM chat_messages WHERE session_id = %s AND seq = 2", (session_id,)
                )
            other.commit()
        finally:
            other.close()
        await repository.lock(session_id)
        rows = await stored_in(session, session_id)
    assert [seq for (seq,) in rows] == [1]


async def stored_in(session: AsyncSession, session_id: str) -> list[tuple[int]]:
    result = await session.execute(
        text("SELECT seq FROM chat_messages WHERE session_id = :s ORDER BY seq"), {"s": session_id}
    )
    return [(seq,) for (seq,) in result]


async def test_a_request_that_lost_a_deadlock_runs_again(
    make_settings: Callable[..., Settings], proxy: TcpProxy, proxied_url: str
) -> None:
    """Galera reports a certification conflict as a deadlock (1213), here answered by the
    proxy in the server's place: the request is undone whole and runs again, so the rename is
    answered 200 and stored, not 409."""
    headers = auth("deadlocked")
    async with serve_app(make_settings(database_url=proxied_url)) as client:
        session_id = await new_session(client, headers, title="before")
        proxy.fail_next(b"UPDATE chat_sessions SET")
        path = f"/api/sessions/{session_id}"
        renamed = await client.patch(path, json={"title": "after"}, headers=headers)
        assert proxy.failed == 1
        assert renamed.status_code == 200, renamed.text
        assert (await client.get(path, headers=headers)).json()["title"] == "after"
