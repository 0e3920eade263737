"""Turns per second through the HTTP API against the same SQL work done directly.

    .venv/bin/python -m bench.turns [--clients 16] [--seconds 10] [--quick]

Works in a fresh MariaDB database (TEST_DATABASE_URL or the local server) with an instant
fake OpenAI-compatible LLM and `session-service serve` (one worker). Concurrent clients send
non-streamed turns, each client starting a new session every 10 turns; the same load goes to
the thinnest app and the two alternatives (bench/thin_app.py, bench/alt_apps.py); then the
statements a turn stores are issued straight through aiomysql at the same concurrency. Each
party's CPU time per turn is read from /proc/<pid>/stat. Three parts of a turn are also
measured alone: the service's HTTP stack (`GET /health/live`), the turn itself in-process with
the offline model (no HTTP, no LLM client), and one LLM call from the client's side (ChatOpenAI
as it comes, the service's model, raw httpx). Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import aiomysql
import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bench.common import (
    aiomysql_options,
    cpu_seconds,
    mariadb_pid,
    other_app,
    scratch_database,
    service,
    write_results,
)
from session_service.agents.pool import AgentPool
from session_service.auth import User
from session_service.chat.generation import Generation
from session_service.chat.questions import Ask
from session_service.chat.sessions import create_session
from session_service.chat.turn import ChatTurns
from session_service.config import Settings
from session_service.db.engine import create_engine, create_session_factory
from session_service.db.turn_lock import TurnLocks
from session_service.llm.factory import build_chat_model, close_chat_model
from session_service.llm.offline import OfflineChatModel
from tests.fakes.openai import FakeLLM

TURNS_PER_SESSION = 10
ROLES = {"system": "system", "human": "user", "ai": "assistant"}
# The thinnest app keeps 20 connections open; so does the service here (its default keeps 10
# and opens up to 10 more that it closes again, which at 16 clients is a reconnect per turn).
POOL = {"DB_POOL_SIZE": "20", "DB_MAX_OVERFLOW": "0"}
OTHER_APPS = {
    "thinnest app": "bench.thin_app:app",
    "SQLChatMessageHistory app": "bench.alt_apps:history_app",
    "LangGraph + MySQL checkpointer": "bench.alt_apps:langgraph_app",
}  # every party then sends histories of the same size


async def drive(
    clients: int,
    seconds: float,
    setup: Callable[[int], Awaitable[Any]],
    one_turn: Callable[[Any, int], Awaitable[None]],
) -> dict[str, float]:
    """Run `one_turn` from `clients` concurrent loops for `seconds`; turns/s and latencies."""
    states = [await setup(index) for index in range(clients)]
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def loop(state: Any) -> None:
        count = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await one_turn(state, count)
            latencies.append(time.perf_counter() - started)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(state) for state in states))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "turns": len(latencies),
        "turns_per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def through_http(
    base: str, clients: int, seconds: float, *, prefix: str = "/api"
) -> dict[str, float]:
    """Turns through an HTTP API: ours (`/api/sessions`) or the thin app's (`/sessions`)."""
    async with httpx.AsyncClient(
        base_url=base + prefix, timeout=60, limits=httpx.Limits(max_connections=clients)
    ) as http:

        async def new_session() -> str:
            response = await http.post("/sessions", json={"title": "bench"})
            return str(response.json()["session_id"])

        async def setup(_index: int) -> list[str]:
            return [await new_session()]

        async def one_turn(state: list[str], count: int) -> None:
            if count and count % TURNS_PER_SESSION == 0:
                state[0] = await new_session()
            response = await http.post(
                f"/sessions/{state[0]}/messages", json={"content": f"question {count}"}
            )
            response.raise_for_status()

        return await drive(clients, seconds, setup, one_turn)


async def liveness_only(base: str, clients: int, seconds: float) -> dict[str, float]:
    """`GET /health/live` (no auth, no database, no LLM): what the HTTP stack alone costs."""
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=clients)
    ) as http:

        async def setup(_index: int) -> None:
            return None

        async def one_request(_state: None, _count: int) -> None:
            (await http.get("/health/live")).raise_for_status()

        return await drive(clients, seconds, setup, one_request)


async def direct_sql(database_url: str, clients: int, seconds: float) -> dict[str, float]:
    pool = await aiomysql.create_pool(
        **aiomysql_options(database_url), autocommit=False, maxsize=clients
    )

    async def setup(_index: int) -> list[Any]:
        session_id = uuid.uuid4().hex
        async with pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(
                "INSERT INTO chat_sessions (session_id, user_id, title, context, message_count,"
                " created_at, updated_at) VALUES (%s, 'bench', 'bench', '{}', 0, %s, %s)",
                (
                    session_id,
                    datetime.now(UTC).replace(tzinfo=None),
                    datetime.now(UTC).replace(tzinfo=None),
                ),
            )
            await connection.commit()
        return [session_id, 0]

    async def store(cursor: Any, session_id: str, seq: int, role: str, content: str) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        await cursor.execute(
            "INSERT INTO chat_messages (session_id, seq, role, content, timestamp, metadata)"
            " VALUES (%s, %s, %s, %s, %s, '{}')",
            (session_id, seq, role, content, now),
        )
        await cursor.execute(
            "UPDATE chat_sessions SET message_count = message_count + 1, updated_at = %s"
            " WHERE session_id = %s",
            (now, session_id),
        )

    async def one_turn(state: list[Any], count: int) -> None:
        if count and count % TURNS_PER_SESSION == 0:
            state[:] = await setup(0)
        session_id, seq = state
        async with pool.acquire() as connection, connection.cursor() as cursor:
            await store(cursor, session_id, seq + 1, "user", f"question {count}")
            await connection.commit()
            await store(cursor, session_id, seq + 2, "assistant", f"echo: question {count}")
            await connection.commit()
        state[1] = seq + 2

    try:
        return await drive(clients, seconds, setup, one_turn)
    finally:
        pool.close()
        await pool.wait_closed()


LLM_CALLS = 300


@contextmanager
def llm_in_a_process() -> Iterator[str]:
    """A fake LLM in a process of its own, so this one's CPU time is the client's alone."""
    code = (
        "import sys; from tests.fakes.openai import FakeLLM; llm = FakeLLM().start(); "
        "print(llm.base_url, flush=True); sys.stdin.read(); llm.stop()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.wait(10)


async def llm_call_cpu(llm_url: str, calls: int = LLM_CALLS) -> dict[str, float]:
    """CPU ms per non-streamed LLM call with a 10-message history, the client's side alone:
    langchain-openai's ChatOpenAI as it comes, the service's model, the same request by httpx."""
    history: list[BaseMessage] = [
        (HumanMessage if index % 2 == 0 else AIMessage)(content=f"message {index} " * 8)
        for index in range(9)
    ]
    prompt = [SystemMessage(content="You are a helpful assistant."), *history]
    body = {
        "model": "m",
        "messages": [{"role": ROLES[m.type], "content": m.text} for m in prompt],
    }
    plain = ChatOpenAI(model="m", base_url=llm_url, api_key=SecretStr("unused"), max_retries=0)
    ours = build_chat_model(Settings(llm_provider="openai", llm_base_url=llm_url, llm_model="m"))
    figures = {}
    async with httpx.AsyncClient(base_url=llm_url) as raw:

        async def raw_call() -> None:
            (await raw.post("/chat/completions", json=body)).raise_for_status()

        async def plain_call() -> None:
            await plain.ainvoke(prompt)

        async def our_call() -> None:
            await ours.ainvoke(prompt)

        for name, call in (("ChatOpenAI", plain_call), ("ours", our_call), ("httpx", raw_call)):
            for _ in range(20):
                await call()
            started = time.process_time()
            for _ in range(calls):
                await call()
            figures[name] = (time.process_time() - started) * 1000 / calls
    await close_chat_model(ours)
    return figures


async def turn_core_cpu(database_url: str, turns: int = 600) -> float:
    """CPU ms per turn of the turn itself — lock and lease, its two transactions, the agent, the
    reply's task — run in this process with the offline model: no HTTP, no OpenAI client."""
    settings = Settings(database_url=database_url, llm_provider="offline")
    engine = create_engine(settings)
    session_factory = create_session_factory(engine)
    chat = ChatTurns(
        settings,
        session_factory,
        session_factory,  # the reserve: one pool is enough here
        AgentPool(settings.agent_pool_max_size),
        TurnLocks(engine, lease_seconds=settings.turn_lock_lease_seconds),
        OfflineChatModel(),
        None,
    )
    user = User(id="bench-core", is_admin=False)

    async def run(count: int) -> None:
        session_id = ""
        for index in range(count):
            if index % TURNS_PER_SESSION == 0:
                async with session_factory() as db:
                    row, _ = await create_session(
                        db,
                        user,
                        None,
                        session_id=None,
                        new_id=uuid.uuid4().hex,
                        title="bench",
                        context={},
                    )
                session_id = row.session_id
                chat.agents.add(row)  # as the API does when it creates one
            started = await chat.begin(user, session_id, Ask(f"question {index}"), stream=False)
            assert isinstance(started, Generation)
            await started.wait()

    try:
        await run(50)  # warm up
        before = time.process_time()
        await run(turns)
        return (time.process_time() - before) * 1000 / turns
    finally:
        await chat.close(5)
        await engine.dispose()


def measured(pids: dict[str, int], run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`run`'s figures, plus each process's CPU milliseconds per turn over the same window."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own_before = time.process_time()
    figures = run()
    for name, pid in pids.items():
        figures[f"{name}_cpu_ms_per_turn"] = (
            (cpu_seconds(pid) - before[name]) * 1000 / figures["turns"]
        )
    figures["bench_cpu_ms_per_turn"] = (time.process_time() - own_before) * 1000 / figures["turns"]
    return figures


def _ms(value: float | None) -> str:
    return f"{value:>10.2f}" if value is not None else f"{'n/a':>10}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the in-process turns and LLM calls"
    )
    args = parser.parse_args()
    server_pid = mariadb_pid()
    server = {"mariadb": server_pid} if server_pid is not None else {}
    llm = FakeLLM().start()
    try:
        with scratch_database() as database_url:
            with service(database_url, llm.base_url, POOL) as (base, pid):
                api = measured(
                    {"service": pid, **server},
                    lambda: asyncio.run(through_http(base, args.clients, args.seconds)),
                )
                http_floor = measured(
                    {"service": pid, **server},
                    lambda: asyncio.run(liveness_only(base, args.clients, args.seconds / 2)),
                )
            asyncmy_url = make_url(database_url).set(drivername="mysql+asyncmy")
            with service(asyncmy_url.render_as_string(hide_password=False), llm.base_url, POOL) as (
                base,
                pid,
            ):
                on_asyncmy = measured(
                    {"service": pid, **server},
                    lambda: asyncio.run(through_http(base, args.clients, args.seconds)),
                )
            others = {}
            for name, app in OTHER_APPS.items():
                with other_app(app, database_url, llm.base_url) as (base, pid):
                    others[name] = measured(
                        {"service": pid, **server},
                        lambda: asyncio.run(
                            through_http(base, args.clients, args.seconds, prefix="")
                        ),
                    )
            thin = others["thinnest app"]
            sql = measured(
                server,
                lambda: asyncio.run(direct_sql(database_url, args.clients, args.seconds)),
            )
            core_cpu = asyncio.run(turn_core_cpu(database_url, 60 if args.quick else 600))
    finally:
        llm.stop()
    with llm_in_a_process() as llm_url:
        llm_cpu = asyncio.run(llm_call_cpu(llm_url, LLM_CALLS // 10 if args.quick else LLM_CALLS))
    rows = (
        ("session-service", api),
        ("  ... on asyncmy", on_asyncmy),
        *others.items(),
        ("SQL floor (driver)", sql),
    )
    print(f"{'':30}{'turns/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'svc CPU ms':>11}{'db CPU ms':>10}")
    for name, figures in rows:
        service_cpu = figures.get("service_cpu_ms_per_turn", figures["bench_cpu_ms_per_turn"])
        print(
            f"{name:30}{figures['turns_per_second']:>9.1f}{figures['p50_ms']:>9.2f}"
            f"{figures['p99_ms']:>9.2f}{service_cpu:>11.2f}{_ms(figures.get('mariadb_cpu_ms_per_turn'))}"
        )
    ratio = api["service_cpu_ms_per_turn"] / thin["service_cpu_ms_per_turn"]
    print(f"our CPU per turn / the thinnest app's: {ratio:.2f}  (target <= 1.5)")
    for name in ("SQLChatMessageHistory app", "LangGraph + MySQL checkpointer"):
        other = others[name]
        print(
            f"vs {name}: throughput x{api['turns_per_second'] / other['turns_per_second']:.2f} "
            f"(target >= 3), CPU per turn "
            f"x{api['service_cpu_ms_per_turn'] / other['service_cpu_ms_per_turn']:.2f} "
            "(target <= 0.33)"
        )
    print(
        "the service's HTTP stack alone (GET /health/live), CPU ms per request: "
        f"{http_floor['service_cpu_ms_per_turn']:.2f}"
    )
    print(
        "the turn itself (lease, two transactions, agent, reply task; offline model, no HTTP), "
        f"CPU ms per turn: {core_cpu:.2f}"
    )
    print(
        "one LLM call alone, client CPU ms: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in llm_cpu.items())
    )
    print(
        "asyncmy / aiomysql CPU per turn: "
        f"{on_asyncmy['service_cpu_ms_per_turn'] / api['service_cpu_ms_per_turn']:.2f}"
    )
    write_results(
        "turns",
        {
            "clients": args.clients,
            "seconds": args.seconds,
            "session_service": api,
            "session_service_asyncmy": on_asyncmy,
            "others": others,
            "sql_floor": sql,
            "cpu_per_turn_vs_thinnest": ratio,
            "llm_call_cpu_ms": llm_cpu,
            "http_stack_only": http_floor,
            "turn_core_cpu_ms": core_cpu,
        },
    )


if __name__ == "__main__":
    main()
