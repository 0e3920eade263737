"""The agent pool and its sweep, driven directly with a hand-held clock."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.utils import count_tokens_approximately, trim_messages
from prometheus_client import REGISTRY
from sqlalchemy import exc as sa_exc

from session_service.agents.agent import ChatAgent
from session_service.agents.pool import AgentPool
from session_service.agents.sweeper import sweep_once
from session_service.background import Repeating
from session_service.llm.offline import OfflineChatModel
from session_service.metrics import ReleaseReason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def agent(session_id: str) -> ChatAgent:
    return ChatAgent(
        session_id=session_id,
        user_id="u",
        session_created_at=datetime.now(UTC),
        system_prompt="",
        token_budget=1000,
    )


def test_release_idle_takes_only_the_idle_and_never_one_in_use() -> None:
    clock = Clock()
    pool = AgentPool(100, clock=clock)
    for name in ("a", "b", "c"):
        pool.add(agent(name))
        clock.now += 10
    pool.get("a")  # a is fresh again; b is now the least recently used
    clock.now += 15  # idle: b 35 s, c 25 s, a 15 s
    with pool.in_use("b"):  # a turn on b starts, and runs long
        clock.now += 30  # idle: c 55 s, a 45 s, b 30 s
        assert pool.release_idle(20) == ["c", "a"]
        assert "b" in pool  # idle past the limit, but in use
    assert pool.release_idle(20) == []  # its turn's end touched it
    clock.now += 100
    assert pool.release_idle(20) == ["b"]
    assert len(pool) == 0
    assert pool.released_total == {ReleaseReason.IDLE: 3}


def test_each_release_is_counted_by_its_reason() -> None:
    """The sweep says `idle`, an admin's cleanup `manual`, a deleted session `deleted`."""

    def released(reason: str) -> float:
        value = REGISTRY.get_sample_value("session_agents_released_total", {"reason": reason})
        assert value is not None, f"no series for reason={reason}"
        return value

    reasons = ("idle", "manual", "deleted")
    before = {reason: released(reason) for reason in reasons}
    clock = Clock()
    pool = AgentPool(10, clock=clock)
    pool.add(agent("old"))
    pool.add(agent("gone"))
    assert pool.release("gone", reason=ReleaseReason.DELETED)
    clock.now += 100
    assert sweep_once(pool, 50) == ["old"]
    pool.add(agent("fresh"))
    assert pool.release_idle(0, reason=ReleaseReason.MANUAL) == ["fresh"]
    assert {reason: released(reason) - before[reason] for reason in reasons} == {
        "idle": 1,
        "manual": 1,
        "deleted": 1,
    }
    assert pool.released_total == {
        ReleaseReason.IDLE: 1,
        ReleaseReason.MANUAL: 1,
        ReleaseReason.DELETED: 1,
    }


def test_an_agent_rebuilt_during_a_turn_is_in_use_too() -> None:
    pool = AgentPool(1, clock=Clock())
    pool.add(agent("s"))
    with pool.in_use("s"):
        pool.replace(agent("s"))  # the turn rebuilt its agent
        pool.add(agent("other"))  # over capacity: only the other can go
        assert "s" in pool
        assert pool.release_idle(0) == []
    assert "other" not in pool


def test_sweep_stops_at_the_first_fresh_agent() -> None:
    """The cost of a sweep is the agents it releases, not the size of the pool."""
    clock = Clock()
    pool = AgentPool(10_000, clock=clock)
    for index in range(10):
        pool.add(agent(f"old{index}"))
    clock.now += 100
    for index in range(5000):
        pool.add(agent(f"new{index}"))
    looked_at = 0

    class CountingDict(OrderedDict[str, ChatAgent]):
        def items(self) -> Iterator[tuple[str, ChatAgent]]:  # type: ignore[override]
            nonlocal looked_at
            for item in super().items():
                looked_at += 1
                yield item

    pool._agents = CountingDict(pool._agents)
    assert pool.release_idle(50) == [f"old{index}" for index in range(10)]
    assert len(pool) == 5000
    assert looked_at == 11  # ten released, one fresh one to stop at
    looked_at = 0
    assert pool.release_idle(50) == []
    assert looked_at == 1


def test_lru_eviction_skips_agents_in_use() -> None:
    pool = AgentPool(2, clock=Clock())
    first, second = agent("first"), agent("second")
    pool.add(first)
    pool.add(second)
    with pool.in_use("first"):
        pool.add(agent("third"))
        assert "first" in pool
        assert "second" not in pool
        assert pool.evictions_total == 1


async def test_concurrent_restores_build_one_agent() -> None:
    pool = AgentPool(10)
    builds = 0

    async def restore() -> ChatAgent:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)
        return agent("s")

    results = await asyncio.gather(*(pool.get_or_rebuild("s", restore) for _ in range(10)))
    assert builds == 1
    assert all(result is results[0] for result in results)
    assert pool.restores_total == 1


async def test_a_failed_restore_is_reported_to_every_waiter_and_retried_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = AgentPool(10)

    async def broken() -> ChatAgent:
        await asyncio.sleep(0.01)
        raise RuntimeError("bad row")

    outcomes = await asyncio.gather(
        *(pool.get_or_rebuild("s", broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert any("agent restore failed" in r.getMessage() for r in caplog.records)

    async def working() -> ChatAgent:
        return agent("s")

    assert (await pool.get_or_rebuild("s", working)).session_id == "s"


async def test_sweep_survives_a_failing_sweep(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pool = AgentPool(10)
    calls = 0
    original = pool.release_idle

    def flaky(max_age: float) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return original(max_age)

    monkeypatch.setattr(pool, "release_idle", flaky)
    pool.add(agent("s"))

    async def sweep() -> None:
        sweep_once(pool, 0)

    sweeper = Repeating("agent-sweep", sweep, interval=0.05)
    sweeper.start()
    await asyncio.sleep(0.3)
    await sweeper.stop()
    assert calls >= 2
    assert "s" not in pool
    assert any(
        r.levelno == logging.ERROR and "agent-sweep failed" in r.getMessage()
        for r in caplog.records
    )


async def test_a_busy_database_costs_a_background_job_one_line_and_a_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = 0

    async def starved() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached")

    job = Repeating("orphaned-replies", starved, interval=0.05, run_at_start=True)
    job.start()
    await asyncio.sleep(0.2)
    await job.stop()
    assert rounds >= 2  # the next tick ran
    said = [r for r in caplog.records if "orphaned-replies failed" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.WARNING
    assert said[0].exc_info is None  # one line, no traceback
    assert "busy" in said[0].getMessage()


async def test_a_rebuild_whose_caller_went_away_is_made_by_the_next_caller() -> None:
    pool = AgentPool(10)
    started = asyncio.Event()

    async def stuck() -> ChatAgent:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    async def working() -> ChatAgent:
        return agent("s")

    first = asyncio.create_task(pool.get_or_rebuild("s", stuck))
    await started.wait()
    second = asyncio.create_task(pool.get_or_rebuild("s", working))
    await asyncio.sleep(0.01)  # the second waits for the first's rebuild
    first.cancel()
    assert (await second).session_id == "s"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert "s" in pool


def test_agent_history_stays_within_its_token_budget() -> None:
    small = agent("s")
    small.token_budget = 50
    for seq in range(1, 101):
        small.append(seq, HumanMessage(content="word " * 10))
    assert small.leaf_id == 100
    assert 2 <= small.message_count <= 5
    with pytest.raises(ValueError, match="not after"):
        small.append(100, HumanMessage(content="again"))


@pytest.mark.parametrize("budget", [1, 20, 57, 100, 333, 10_000])
def test_the_llm_is_shown_what_trim_messages_would_keep(budget: int) -> None:
    """The window comes from the counts kept per message; it must equal LangChain's own
    `trim_messages` over the same history, whatever the budget cuts."""
    rng = random.Random(budget)
    history: list[BaseMessage] = []
    for _ in range(60):
        kind = rng.choice([HumanMessage, AIMessage, AIMessage, HumanMessage, HumanMessage])
        history.append(kind(content="word " * rng.randint(1, 80)))
    windowed = agent("s")
    windowed.token_budget = budget
    windowed.extend(enumerate(history, start=1))
    expected = trim_messages(
        history,
        max_tokens=budget,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
    )
    system, *window = windowed.prompt()
    assert isinstance(system, SystemMessage)
    assert [(m.type, m.text) for m in window] == [(m.type, m.text) for m in expected]


async def test_offline_model_streams_word_by_word() -> None:
    model = OfflineChatModel()
    chunks = [chunk async for chunk in model.astream([HumanMessage(content="how are you")])]
    texts = [chunk.text for chunk in chunks if chunk.text]
    assert len(texts) > 5
    whole = await model.ainvoke([HumanMessage(content="how are you")])
    assert "".join(texts) == whole.text
    assert '"how are you"' in whole.text
    assert isinstance(chunks[-1], AIMessageChunk)
    assert chunks[-1].usage_metadata is not None
