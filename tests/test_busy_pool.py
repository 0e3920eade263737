"""A busy process keeps what it generated: while every connection of the request pool is
taken, a turn already accepted still stores its reply whole and lets its lease go (they use the
reserve's connections), and the next request is answered once the pool is free again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from session_service import main
from session_service.config import Settings
from session_service.db.models import ChatSession
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import auth, eventually, mysql_connect, new_session, stored, turn

HEADERS = auth("starved")


async def test_a_reply_is_stored_while_the_request_pool_is_taken(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engines: dict[bool, AsyncEngine] = {}
    create = main.create_engine

    def recorded(settings: Settings, *, reserve: bool = False) -> AsyncEngine:
        engines[reserve] = create(settings, reserve=reserve)
        return engines[reserve]

    monkeypatch.setattr(main, "create_engine", recorded)
    fake_llm.delay = 0.5
    settings = llm_settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.1)
    async with serve_app(settings) as client:
        session_id = await new_session(client, HEADERS)
        answer = asyncio.create_task(turn(client, HEADERS, session_id, "kept?"))
        await asyncio.sleep(0.2)  # the question is stored; the LLM answers in 0.3 s more
        async with engines[False].connect() as taken:  # the request pool's only connection
            await taken.exec_driver_sql("SELECT 1")
            await asyncio.sleep(1.0)  # the reply ends meanwhile and must be stored
            rows = await stored(db, session_id)
        answered: Any = await answer
        assert answered.status_code == 201, answered.text
        assert rows == [(1, "user", "kept?"), (2, "assistant", "echo: kept?")]
        async with db() as session:
            lease = await session.scalar(
                select(ChatSession.turn_lock_owner).where(
                    ChatSession.session_id == session_id  # type: ignore[arg-type]
                )
            )
        assert lease is None
        assert (await turn(client, HEADERS, session_id, "and now?")).status_code == 201


async def test_a_reply_stored_while_its_lease_renewal_waits_for_a_connection(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    migrated_url: str,
) -> None:
    """The reply's store holds the reserve pool's only connection, held up by a row lock,
    while the lease's renewal comes due and waits for a connection: the store must not then
    wait for that renewal (which waits for its connection: until the pool's 60 s timeout)."""
    fake_llm.delay = 0.5
    settings = llm_settings(db_reserve_pool_size=1, turn_lock_lease_seconds=3)  # renewed each 1 s
    async with serve_app(settings) as client:
        session_id = await new_session(client, HEADERS)
        answer = asyncio.create_task(turn(client, HEADERS, session_id, "held up"))

        async def asked() -> bool:  # the question is stored, its lease claimed
            return bool(fake_llm.calls)

        await eventually(asked)
        await asyncio.sleep(0.25)  # the reply's store begins in 0.2 s, a renewal in 0.7 s
        holder = mysql_connect(migrated_url)
        try:
            with holder.cursor() as cursor:
                cursor.execute(
                    "SELECT 1 FROM chat_sessions WHERE session_id = %s FOR UPDATE", (session_id,)
                )
            await asyncio.sleep(1.2)  # past the renewal's time
        finally:
            holder.rollback()
            holder.close()
        answered: Any = await asyncio.wait_for(answer, 15)
    assert answered.status_code == 201, answered.text
