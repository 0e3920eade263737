"""MAX_CONCURRENT_TURNS: a turn the process cannot take on is refused up front (503 with
Retry-After), with nothing stored and no LLM call; the turns it took on are served whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import auth, new_session, stored, turn
from tests.test_metrics import sample

HEADERS = auth("admission")
T = TypeVar("T")


async def test_turns_past_the_bound_are_refused_before_anything_is_stored(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.delay = 0.5
    async with serve_app(llm_settings(max_concurrent_turns=2)) as client:
        sessions = [await new_session(client, HEADERS) for _ in range(4)]
        answered = await turn(client, HEADERS, sessions[3], "first", client_message_id="m-1")
        assert answered.status_code == 201
        before = (await client.get("/metrics")).text
        answers = await asyncio.gather(
            turn(client, HEADERS, sessions[0], "one"),
            turn(client, HEADERS, sessions[1], "two", stream=True),
            _after(0.1, turn(client, HEADERS, sessions[2], "three")),
            # a repeat of a stored turn is no new turn: answered, even at the bound
            _after(0.1, turn(client, HEADERS, sessions[3], "first", client_message_id="m-1")),
        )
        assert [a.status_code for a in answers] == [201, 201, 503, 200]
        refused = answers[2]
        assert refused.headers["retry-after"] == "1"
        assert "limit of 2 turns" in refused.json()["detail"]
        assert await stored(db, sessions[2]) == []  # nothing stored for it
        assert len(fake_llm.calls) == 3  # "first", "one", "two"
        after = (await client.get("/metrics")).text
        again = await turn(client, HEADERS, sessions[2], "three")  # room again
        assert again.status_code == 201
    refusals = "session_turns_refused_total"
    assert sample(after, refusals) - sample(before, refusals) == 1
    assert sample(after, "session_turns_in_flight") == 0


async def _after(seconds: float, call: Awaitable[T]) -> T:
    await asyncio.sleep(seconds)
    return await call


async def test_the_bound_counts_turns_until_their_reply_is_stored(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    fake_llm.delay = 0.3
    async with serve_app(llm_settings(max_concurrent_turns=1)) as client:
        first, second = await new_session(client, HEADERS), await new_session(client, HEADERS)
        task = asyncio.create_task(turn(client, HEADERS, first, "slow"))
        await asyncio.sleep(0.1)
        busy = await turn(client, HEADERS, second, "now?")
        assert busy.status_code == 503
        assert (await task).status_code == 201
        assert (await turn(client, HEADERS, second, "now")).status_code == 201


async def test_admission_is_not_an_outage_for_a_client(client: AsyncClient) -> None:
    """Refusals come only past the bound: the default lets ordinary use through."""
    session_id = await new_session(client, HEADERS)
    answers = await asyncio.gather(*(turn(client, HEADERS, session_id, f"q{i}") for i in range(5)))
    assert {a.status_code for a in answers} == {201}


async def test_a_loop_running_late_refuses_turns_until_it_keeps_time_again(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with serve_app(llm_settings(max_event_loop_lag_ms=200)) as client:
        session_id = await new_session(client, HEADERS)
        before = (await client.get("/metrics")).text
        _block_the_loop(0.5)  # the app runs on this loop: its lag watcher is held up too
        await asyncio.sleep(0.15)  # the watcher's next measure notes how late it ran
        refused = await turn(client, HEADERS, session_id, "now?")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "event loop" in refused.json()["detail"]
        assert "late" in refused.json()["detail"]
        assert await stored(db, session_id) == []  # nothing stored for it
        assert fake_llm.calls == []
        during = (await client.get("/metrics")).text
        assert sample(during, "session_event_loop_lag_seconds") > 0.2
        await asyncio.sleep(1.2)  # a second of measures on time: the late one is forgotten
        again = await turn(client, HEADERS, session_id, "now")
        assert again.status_code == 201, again.text
    refusals = "session_turns_refused_total"
    assert sample(during, refusals) - sample(before, refusals) == 1
    assert [content for _, _, content in await stored(db, session_id)][:1] == ["now"]


async def test_a_loop_running_late_refuses_nothing_by_default(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    async with serve_app(llm_settings()) as client:
        session_id = await new_session(client, HEADERS)
        _block_the_loop(0.5)
        await asyncio.sleep(0.15)
        answered = await turn(client, HEADERS, session_id, "now?")
        assert answered.status_code == 201, answered.text
        # measured all the same (the watcher runs either way), only not acted on
        lag = sample((await client.get("/metrics")).text, "session_event_loop_lag_seconds")
        assert lag > 0.2


def _block_the_loop(seconds: float) -> None:
    """Hold up the running event loop (called from a coroutine), as CPU-bound work would."""
    time.sleep(seconds)
