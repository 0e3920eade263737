"""How the service's costs scale: restoring an agent against history length, memory per
pooled agent, the idle sweep against pool size, and a turn in a long session. A restore is
timed as a GET of a released session; the same GET again (agent pooled) is timed too, and the
difference is the rebuild's own cost, set against a bare SELECT of all the session's rows.

    .venv/bin/python -m bench.scaling [--quick]

Prints a table, writes JSON to bench/results/ and draws bench/results/scaling.png.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import aiomysql
import httpx
from langchain_core.messages import AIMessage, HumanMessage

from bench.common import (
    RESULTS,
    aiomysql_options,
    fill,
    scratch_database,
    service,
    write_results,
)
from session_service.agents.agent import ChatAgent
from session_service.agents.pool import AgentPool
from tests.fakes.openai import FakeLLM

REPEATS = 40


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def memory_per_agent(count: int) -> dict[str, float]:
    """RSS growth per pooled agent with a 10-message history, less the history text; in a
    fresh process, so memory freed by earlier work cannot hide the growth."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as fresh:
        return fresh.submit(_memory_per_agent, count).result()


def _memory_per_agent(count: int) -> dict[str, float]:
    gc.collect()
    before = rss_bytes()
    pool = AgentPool(count + 1)
    text_bytes = 0
    now = datetime.now(UTC)
    for index in range(count):
        agent = ChatAgent(f"s{index:08d}", "user", now, "You are helpful.", 8000)
        for seq in range(1, 11):
            content = f"message {seq} of session {index}: some words here"
            text_bytes += len(content)
            cls = HumanMessage if seq % 2 else AIMessage
            agent.append(seq, cls(content=content))
        pool.add(agent)
    gc.collect()
    grown = rss_bytes() - before
    del pool
    gc.collect()
    return {
        "agents": count,
        "rss_growth_mib": grown / 2**20,
        "bytes_per_agent_beyond_text": (grown - text_bytes) / count,
    }


def sweep_cost(pool_size: int, expired_share: float) -> dict[str, float]:
    """One sweep over `pool_size` agents of which `expired_share` are idle past the limit."""
    clock = [0.0]
    pool = AgentPool(pool_size + 1, clock=lambda: clock[0])
    now = datetime.now(UTC)
    expired = int(pool_size * expired_share)
    for index in range(pool_size):
        if index == expired:
            clock[0] = 1000.0
        pool.add(ChatAgent(f"s{index}", "u", now, "", 8000))
    clock[0] = 1500.0  # the first `expired` agents are 1500 s idle, the others 500 s
    started = time.perf_counter()
    released = pool.release_idle(1000)
    took = time.perf_counter() - started
    assert len(released) == expired
    return {"pool": pool_size, "expired": expired, "sweep_ms": took * 1000}


async def bare_select(database_url: str, session_id: str, repeats: int) -> float:
    connection = await aiomysql.connect(**aiomysql_options(database_url))
    times = []
    async with connection.cursor() as cursor:
        for _ in range(repeats):
            started = time.perf_counter()
            await cursor.execute(
                "SELECT id, seq, role, content, timestamp, metadata FROM chat_messages"
                " WHERE session_id = %s ORDER BY seq",
                (session_id,),
            )
            await cursor.fetchall()
            times.append(time.perf_counter() - started)
    connection.close()
    return statistics.median(times) * 1000


async def restore_and_long_sessions(
    database_url: str, base: str, sizes: list[int], turn_sizes: list[int], repeats: int
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Restores at each size and turns at each of `turn_sizes`, measured in interleaved rounds
    (one of each per round), so that the machine slowing down now and then hits all alike."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def filled(size: int) -> str:
            created = await http.post("/api/sessions", json={"title": "bench"})  # no title call
            session_id = str(created.json()["session_id"])
            await fill(database_url, session_id, size)
            return session_id

        async def timed_get(session_id: str) -> float:
            started = time.perf_counter()
            response = await http.get(f"/api/sessions/{session_id}?messages_limit=0")
            took = time.perf_counter() - started
            assert response.json()["agent_active"] is True
            return took

        stored = {size: await filled(size) for size in sizes}
        released: dict[int, list[float]] = {size: [] for size in sizes}
        pooled: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(repeats):
            await http.post("/api/sessions/cleanup", json={"max_age_seconds": 0})
            for size in sizes:
                released[size].append(await timed_get(stored[size]))
            for size in sizes:  # the same GET again finds the agent pooled
                pooled[size].append(await timed_get(stored[size]))
        restores = []
        for size in sizes:
            restore_get_ms = statistics.median(released[size]) * 1000
            pooled_get_ms = statistics.median(pooled[size]) * 1000
            restores.append(
                {
                    "messages": size,
                    "restore_get_ms": restore_get_ms,
                    "pooled_get_ms": pooled_get_ms,
                    "restore_ms": restore_get_ms - pooled_get_ms,  # the rebuild's own cost
                    "bare_select_ms": await bare_select(database_url, stored[size], repeats),
                }
            )

        # Each measured turn finds its session holding `size` messages and its agent pooled:
        # a long session grows by two messages a turn, which is nothing next to its size; a
        # short one would not stay short, so every round takes a fresh one.
        turn_sessions = {
            size: [await filled(size) for _ in range(repeats)]
            if size < 1000
            else [stored.get(size) or await filled(size)] * repeats
            for size in turn_sizes
        }
        await http.post("/api/sessions/cleanup", json={"max_age_seconds": 0})
        for sessions in turn_sessions.values():
            for session_id in set(sessions):
                await timed_get(session_id)  # the agent is rebuilt from the rows, and pooled
        turns: dict[int, list[float]] = {size: [] for size in turn_sizes}
        for index in range(repeats):
            for size in turn_sizes:
                started = time.perf_counter()
                response = await http.post(
                    f"/api/sessions/{turn_sessions[size][index]}/messages",
                    json={"content": f"question {index}"},
                )
                turns[size].append(time.perf_counter() - started)
                assert response.status_code == 201
    return restores, {str(size): statistics.median(turns[size]) * 1000 for size in turn_sizes}


def chart(
    restores: list[dict[str, float]],
    turn_ms: dict[str, float],
    memory: list[dict[str, float]],
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    sizes = [r["messages"] for r in restores]
    left.loglog(sizes, [r["restore_get_ms"] for r in restores], "o-", label="GET, agent rebuilt")
    left.loglog(sizes, [r["pooled_get_ms"] for r in restores], "^:", label="GET, agent pooled")
    left.loglog(
        sizes, [max(r["restore_ms"], 0.01) for r in restores], "d-", label="the rebuild itself"
    )
    left.loglog(
        sizes, [r["bare_select_ms"] for r in restores], "s--", label="bare SELECT of all rows"
    )
    left.set_xlabel("stored messages in the session")
    left.set_ylabel("ms (median)")
    left.set_title("Restoring a released session")
    left.legend()
    stored = [int(size) for size in turn_ms]
    middle.semilogx(stored, list(turn_ms.values()), "o-", label="a non-streamed turn")
    middle.set_ylim(bottom=0)
    middle.set_xlabel("stored messages in the session")
    middle.set_ylabel("ms (median, one client)")
    middle.set_title("A turn in a long session")
    middle.legend()
    counts = [m["agents"] for m in memory]
    right.plot(counts, [m["bytes_per_agent_beyond_text"] / 1024 for m in memory], "o-")
    right.axhline(8, color="grey", linestyle=":", label="target 8 KiB")
    right.set_xscale("log")
    right.set_xlabel("pooled agents (10 messages each)")
    right.set_ylabel("KiB per agent beyond the text")
    right.set_title("Memory per pooled agent")
    right.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and 10 rounds, for a smoke run"
    )
    args = parser.parse_args()
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 5000, 10000]
    turn_sizes = [10, 1000] if args.quick else [10, 1000, 5000, 10000]
    agent_counts = [1000, 10000] if args.quick else [10000, 100000]
    llm = FakeLLM().start()
    try:
        with scratch_database() as database_url, service(database_url, llm.base_url) as (base, _):
            restores, turn_ms = asyncio.run(
                restore_and_long_sessions(
                    database_url, base, sizes, turn_sizes, 10 if args.quick else REPEATS
                )
            )
    finally:
        llm.stop()
    memory = [memory_per_agent(count) for count in agent_counts]
    pool = agent_counts[-1]
    sweeps = [sweep_cost(pool, 0.0), sweep_cost(pool, 0.01)]

    print(
        f"{'messages':>10}{'GET released':>14}{'GET pooled':>12}{'restore':>10}"
        f"{'bare SELECT':>13}{'restore/SELECT':>16}  (ms, medians)"
    )
    for row in restores:
        row["ratio"] = row["restore_ms"] / row["bare_select_ms"]
        print(
            f"{row['messages']:>10}{row['restore_get_ms']:>14.2f}{row['pooled_get_ms']:>12.2f}"
            f"{row['restore_ms']:>10.2f}{row['bare_select_ms']:>13.2f}{row['ratio']:>16.2f}"
        )
    for row in memory:
        print(
            f"{row['agents']:>8} agents: {row['rss_growth_mib']:.0f} MiB, "
            f"{row['bytes_per_agent_beyond_text'] / 1024:.2f} KiB per agent beyond the text"
        )
    for row in sweeps:
        print(
            f"sweep over {row['pool']} agents, {row['expired']} expired: {row['sweep_ms']:.3f} ms"
        )
    print(
        "turn latency by stored messages (ms, median, one client, interleaved):",
        {k: round(v, 2) for k, v in turn_ms.items()},
    )
    out = RESULTS / "scaling.png"
    RESULTS.mkdir(exist_ok=True)
    chart(restores, turn_ms, memory, out)
    print(f"chart: {out}")
    write_results(
        "scaling",
        {"restore": restores, "memory": memory, "sweep": sweeps, "turn_ms_by_history": turn_ms},
    )


if __name__ == "__main__":
    main()
