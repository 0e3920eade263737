"""The message tree against a line: reading a session and taking a turn cost the same whatever
the tree around the active branch; and what watching for stops costs.

    .venv/bin/python -m bench.tree [--branch 200] [--branches 50] [--repeats 30]

In a fresh MariaDB database (TEST_DATABASE_URL or the local server), `session-service serve`
with an instant fake LLM: one session holding a line of BRANCH messages, and one holding
BRANCHES branches of BRANCH messages each (10,000 by default), whose active branch is as long
as the line. For each, in interleaved rounds: GET /api/sessions/{id} (the latest 50 of the
active branch), paging the whole active branch (GET .../messages, 50 a page), the same GET
after the agent was released (rebuilt from the branch), and a turn; medians, and the
service's CPU per request. Then the stop watcher: the CPU of one look for stop requests, which
a replica makes every 0.5 s while it has replies running. Prints a table and writes JSON to
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import cpu_seconds, fill, scratch_database, service, write_results
from session_service.chat.generation import Generation
from session_service.chat.replies import Replies
from session_service.chat.stopping import STOP_POLL_SECONDS, Stops
from session_service.config import Settings
from session_service.db.engine import create_engine, create_session_factory
from tests.fakes.openai import FakeLLM

PAGE = 50
LOOKS = 500


async def tree_against_line(
    database_url: str, base: str, pid: int, branch: int, branches: int, repeats: int
) -> dict[str, dict[str, float]]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def session_of(count: int, parts: int) -> str:
            created = await http.post("/api/sessions", json={"title": "bench"})  # no title call
            session_id = str(created.json()["session_id"])
            await fill(database_url, session_id, count, branches=parts)
            return session_id

        sessions = {
            "line": await session_of(branch, 1),
            "tree": await session_of(branch * branches, branches),
        }

        async def read(session_id: str) -> None:
            response = await http.get(f"/api/sessions/{session_id}?messages_limit={PAGE}")
            assert len(response.json()["messages"]) == PAGE

        async def page_all(session_id: str) -> None:
            cursor, seen = None, 0
            while True:
                params = {"limit": PAGE} | ({"before": cursor} if cursor else {})
                page = (
                    await http.get(f"/api/sessions/{session_id}/messages", params=params)
                ).json()
                seen += len(page["items"])
                if (cursor := page["next_cursor"]) is None:
                    break
            assert seen >= branch

        async def restore(session_id: str) -> None:
            await http.post("/api/sessions/cleanup", json={"max_age_seconds": 0})
            await read(session_id)

        async def turn(session_id: str) -> None:
            response = await http.post(
                f"/api/sessions/{session_id}/messages", json={"content": "and then?"}
            )
            assert response.status_code == 201

        operations: dict[str, Callable[[str], Awaitable[None]]] = {
            "get_ms": read,
            "page_all_ms": page_all,
            "restore_get_ms": restore,
            "turn_ms": turn,
        }
        times: dict[str, dict[str, list[float]]] = {
            kind: {name: [] for name in operations} for kind in sessions
        }
        cpu: dict[str, dict[str, list[float]]] = {
            kind: {name: [] for name in operations} for kind in sessions
        }
        for _ in range(repeats):
            for name, operation in operations.items():
                for kind, session_id in sessions.items():
                    used, started = cpu_seconds(pid), time.perf_counter()
                    await operation(session_id)
                    times[kind][name].append(time.perf_counter() - started)
                    cpu[kind][name].append(cpu_seconds(pid) - used)
    figures: dict[str, dict[str, float]] = {}
    for kind in sessions:
        figures[kind] = {name: statistics.median(times[kind][name]) * 1000 for name in operations}
        for name in operations:
            figures[kind][name.replace("_ms", "_cpu_ms")] = statistics.mean(cpu[kind][name]) * 1000
    return figures


async def stop_watch_cpu(database_url: str) -> float:
    """CPU ms of one look for stop requests (`Stops.watch` with a reply running here)."""
    settings = Settings(database_url=database_url)
    engine = create_engine(settings)
    session_factory = create_session_factory(engine)
    replies = Replies(session_factory)
    stops = Stops(session_factory, session_factory, replies)
    running = asyncio.Event()

    async def generating() -> None:
        await running.wait()

    replies.start(Generation("s", 1), generating(), ended=lambda: None)
    try:
        for _ in range(20):
            await stops.watch()
        started = time.process_time()
        for _ in range(LOOKS):
            await stops.watch()
        return (time.process_time() - started) * 1000 / LOOKS
    finally:
        running.set()
        await replies.close(1)
        await engine.dispose()


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branch", type=int, default=200, help="messages on the active branch")
    parser.add_argument("--branches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    llm = FakeLLM().start()
    try:
        with (
            scratch_database() as database_url,
            service(database_url, llm.base_url) as (
                base,
                pid,
            ),
        ):
            figures = asyncio.run(
                tree_against_line(database_url, base, pid, args.branch, args.branches, args.repeats)
            )
            look_ms = asyncio.run(stop_watch_cpu(database_url))
    finally:
        llm.stop()
    line, tree = figures["line"], figures["tree"]
    print(f"{'':24}{'line':>10}{'tree':>10}{'tree/line':>11}")
    for name in line:
        print(f"{name:24}{line[name]:10.2f}{tree[name]:10.2f}{tree[name] / line[name]:11.2f}")
    looks_per_second = 1 / STOP_POLL_SECONDS
    print(
        f"stop watcher: {look_ms:.3f} ms CPU per look, {looks_per_second:.0f} looks/s while "
        f"replies run: {look_ms * looks_per_second / 10:.4f} ms per turn of 1 s with 10 turns "
        f"running, {look_ms * looks_per_second:.3f} ms per second of a turn running alone"
    )
    results = {
        "branch_messages": args.branch,
        "branches": args.branches,
        "tree_messages": args.branch * args.branches,
        "repeats": args.repeats,
        "line": line,
        "tree": tree,
        "tree_over_line": {name: tree[name] / line[name] for name in line},
        "stop_watch_cpu_ms_per_look": look_ms,
        "stop_watch_looks_per_second": looks_per_second,
    }
    write_results("tree", results)
    return results


if __name__ == "__main__":
    main()
