"""The admin routes over every worker of a replica: the workers' sockets driven directly, the
routes in-process (one worker), and `serve --workers 2` for real."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from session_service.agents.agent import ChatAgent
from session_service.agents.pool import AgentPool
from session_service.agents.workers import Workers
from session_service.config import Settings
from session_service.metrics import ReleaseReason
from tests.conftest import serve_app
from tests.helpers import auth
from tests.processes import serving
from tests.test_metrics import sample

ADMIN = auth("workers-admin", admin=True)


def pool_of(*session_ids: str) -> AgentPool:
    pool = AgentPool(10)
    for session_id in session_ids:
        pool.add(
            ChatAgent(
                session_id=session_id,
                user_id="u",
                session_created_at=datetime.now(UTC),
                system_prompt="",
                token_budget=1000,
            )
        )
    return pool


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@asynccontextmanager
async def started(workers: Workers) -> AsyncIterator[Workers]:
    await workers.start()
    try:
        yield workers
    finally:
        await workers.stop()


async def test_workers_sharing_a_directory_see_and_release_each_others_agents(
    tmp_path: Path,
) -> None:
    one = Workers(pool_of("a1", "a2"), tmp_path, pid=101)
    two = Workers(pool_of("b1"), tmp_path, pid=202)
    async with started(one), started(two):
        assert files_in(tmp_path) == ["101.sock", "202.sock"]
        shares = await two.status(limit=10)
        assert [(s.pid, s.active_agents, s.max_agents) for s in shares] == [
            (101, 2, 10),
            (202, 1, 10),
        ]
        assert [[a.session_id for a in s.agents] for s in shares] == [["a1", "a2"], ["b1"]]
        assert [len(s.agents) for s in await one.status(limit=1)] == [1, 1]

        released = await one.release_idle(0)
        assert [(r.pid, r.released, r.active_agents) for r in released] == [
            (101, ["a1", "a2"], 0),
            (202, ["b1"], 0),
        ]
        assert len(one.pool) == len(two.pool) == 0
        assert two.pool.released_total == {ReleaseReason.MANUAL: 1}
    assert files_in(tmp_path) == []  # each worker removes its socket when it stops


async def test_a_dead_workers_socket_is_removed_and_a_stuck_one_left_out(tmp_path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "303.sock"))  # a worker killed -9 leaves its socket file behind
    dead.close()

    done = asyncio.Event()

    async def never_answer(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await done.wait()  # until the test ends

    stuck = await asyncio.start_unix_server(never_answer, path=tmp_path / "404.sock")
    try:
        async with started(Workers(pool_of("mine"), tmp_path, pid=101, timeout=0.3)) as workers:
            began = time.monotonic()
            shares = await workers.status(limit=10)
            assert time.monotonic() - began < 2
            assert [share.pid for share in shares] == [101]
            assert [share.pid for share in await workers.release_idle(0)] == [101]
        assert files_in(tmp_path) == ["404.sock"]
    finally:
        done.set()
        stuck.close()


async def test_one_worker_answers_for_itself_without_a_socket() -> None:
    workers = Workers(pool_of("s"))
    await workers.start()
    [share] = await workers.status(limit=10)
    assert (share.pid, share.active_agents) == (os.getpid(), 1)
    [released] = await workers.release_idle(0)
    assert released.released == ["s"]
    await workers.stop()


async def test_status_and_cleanup_name_each_worker_and_settings_in_whole_seconds(
    llm_settings: Callable[..., Settings],
) -> None:
    alice = auth("alice-workers")
    settings = llm_settings(agent_max_age_seconds=1800, agent_cleanup_interval_seconds=0.2)
    async with serve_app(settings) as client:
        session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()[
            "session_id"
        ]
        status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
        cleaned = (
            await client.post("/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=ADMIN)
        ).json()
    assert type(status["max_age_seconds"]) is int
    assert status["max_age_seconds"] == 1800
    assert status["cleanup_interval_seconds"] == 1  # 0.2 s, rounded up
    mine = {a["session_id"]: a["worker_pid"] for a in status["agents"]}
    assert mine[session_id] == os.getpid()
    assert status["workers"] == [
        {
            "pid": os.getpid(),
            "active_agents": status["active_agents"],
            "max_agents": status["max_agents"],
            "evictions_total": status["evictions_total"],
            "restores_total": status["restores_total"],
        }
    ]
    assert cleaned["workers"] == [
        {"pid": os.getpid(), "released": cleaned["released"], "active_agents": 0}
    ]


def test_serve_with_two_workers_shows_and_cleans_up_every_workers_agents(tmp_path: Path) -> None:
    """Sessions are created (each with its agent) until both workers hold some; then any
    worker's status shows them all, and one cleanup releases them in both."""
    # Where serve makes its private directories: short, as a unix socket's path must be.
    temporary = Path(tempfile.mkdtemp(prefix="ss-"))
    # LOG_LEVEL: the output waits in a pipe until the end, and must not fill it
    with serving(tmp_path, "--workers", "2", LOG_LEVEL="WARNING", TMPDIR=str(temporary)) as server:
        assert {path.name.rsplit("-", 1)[0] for path in temporary.iterdir()} == {
            "session-service-metrics",
            "session-service-workers",
        }
        created: set[str] = set()
        for _ in range(100):
            # a new connection each time, so both workers answer some
            response = httpx.post(f"{server.base}/api/sessions", json={}, timeout=10)
            assert response.status_code == 201
            created.add(response.json()["session_id"])
            status = httpx.get(f"{server.base}/api/sessions/status", timeout=10).json()
            if len({agent["worker_pid"] for agent in status["agents"]}) == 2:
                break
        holders = Counter(agent["worker_pid"] for agent in status["agents"])
        assert len(holders) == 2, f"one worker's agents only: {status['workers']}"

        for _ in range(6):  # whichever worker answers
            status = httpx.get(f"{server.base}/api/sessions/status", timeout=10).json()
            assert {agent["session_id"] for agent in status["agents"]} == created
            assert status["active_agents"] == len(created)
            assert status["max_agents"] == 2 * 1000
            assert {w["pid"]: w["active_agents"] for w in status["workers"]} == holders

        cleaned = httpx.post(
            f"{server.base}/api/sessions/cleanup", json={"max_age_seconds": 0}, timeout=10
        ).json()
        assert cleaned["released"] == len(created)
        assert cleaned["active_agents"] == 0
        assert {w["pid"]: w["released"] for w in cleaned["workers"]} == holders

        status = httpx.get(f"{server.base}/api/sessions/status", timeout=10).json()
        assert (status["active_agents"], status["agents"]) == (0, [])
        assert [w["active_agents"] for w in status["workers"]] == [0, 0]

        # A DELETE releases the session's agent in whichever worker holds it.
        doomed = []
        for _ in range(100):
            response = httpx.post(f"{server.base}/api/sessions", json={}, timeout=10)
            doomed.append(response.json()["session_id"])
            status = httpx.get(f"{server.base}/api/sessions/status", timeout=10).json()
            if len({agent["worker_pid"] for agent in status["agents"]}) == 2:
                break
        assert status["active_agents"] == len(doomed)
        assert [w["active_agents"] > 0 for w in status["workers"]] == [True, True]
        for session_id in doomed:
            deleted = httpx.delete(f"{server.base}/api/sessions/{session_id}", timeout=10)
            assert deleted.status_code == 204
        status = httpx.get(f"{server.base}/api/sessions/status", timeout=10).json()
        assert (status["active_agents"], status["agents"]) == (0, [])
        text = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert sample(text, "session_agents_released_total", reason="manual") == len(created)
    assert sample(text, "session_agents_released_total", reason="deleted") == len(doomed)
    assert sample(text, "session_agents_active") == 0
    assert list(temporary.iterdir()) == []  # both removed at exit
    temporary.rmdir()
