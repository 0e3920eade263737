"""A bounded soak: concurrent clients on two replicas, faults on a schedule, then a checker.

    .venv/bin/python -m bench.soak [--clients 16] [--sessions 8] [--seconds 30]

Two `session-service serve` processes share one MariaDB database, reached through a TCP proxy
that the schedule cuts for a second now and then; the fake LLM fails or drops connections on
its own schedule. Clients (bench/soak_clients.py) mix turns, streamed turns (some hanging up
after the first delta, some stopped there), edits into branches, regenerations, switches of
branch, turns that interrupt the running reply, reads, lists, deletes with re-creation, and
admin cleanups, on few enough sessions that they collide. Afterwards the checker
(bench/soak_check.py) reads MySQL and proves that every acknowledged message is stored once
and unchanged, in its session, with unique sequence numbers; that every session is a valid
tree (each message under an earlier one of its own, every reply under a question) whose active
leaf is its own and whose count is right; that every acknowledged answer is under its
question; that no reply is left in progress; and that the messages of deleted sessions are
gone.
Prints the load held and the faults survived; exits 1 if the checker found a problem.
`--galera`: on a 3-node MariaDB Galera cluster instead (tests/galera.py), each replica writing
through a node of its own, the first one's node behind the proxy and failing over (DATABASE_HOSTS).
`--haproxy`: on the cluster behind HAProxy (bench/haproxy.py), one writer at a time, both
replicas writing through it; the database fault stops the writer node, which then rejoins.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any, Protocol

import httpx
from sqlalchemy.engine import make_url

from bench.common import scratch_database, service, write_results
from bench.haproxy import haproxy
from bench.soak_check import Ledger, check
from bench.soak_clients import USER, client_loop
from tests.fakes.openai import FakeLLM
from tests.fakes.tcp_proxy import TcpProxy
from tests.galera import Cluster, Node
from tests.helpers import JWT_SECRET


class Outage(Protocol):
    """What the "database" fault does: cut the way to the database, then give it back."""

    def cut(self, mode: str = "refuse") -> None: ...

    def restore(self) -> None: ...


class NodeStopped:
    """The "database" fault behind HAProxy: its writer node stops, then rejoins."""

    def __init__(self, cluster: Cluster, node: Node) -> None:
        self.cluster, self.node = cluster, node

    def cut(self, mode: str = "refuse") -> None:
        self.cluster.stop_node(self.node)

    def restore(self) -> None:
        self.cluster.start_node(self.node)


async def faults(proxy: Outage, llm: FakeLLM, stop_at: float, survived: Counter[str]) -> None:
    rng = random.Random(7)
    while time.perf_counter() < stop_at - 3:
        await asyncio.sleep(rng.uniform(2, 4))
        fault = rng.choice(["database", "llm 500", "llm drop", "llm mid-stream"])
        if fault == "database":
            await asyncio.to_thread(proxy.cut, "refuse")
            await asyncio.sleep(1)
            await asyncio.to_thread(proxy.restore)
        elif fault == "llm 500":
            llm.fail_status = 500
            await asyncio.sleep(1)
            llm.fail_status = None
        elif fault == "llm drop":
            llm.drop = True
            await asyncio.sleep(1)
            llm.drop = False
        else:
            llm.drop_after_chunks = 2
            await asyncio.sleep(1)
            llm.drop_after_chunks = None
        survived[fault] += 1


async def soak(bases: list[str], args: argparse.Namespace, proxy: Outage, llm: FakeLLM) -> Any:
    sessions = [f"soak-{index}" for index in range(args.sessions)]
    async with httpx.AsyncClient(timeout=30) as http:
        for session_id in sessions:
            await http.post(
                f"{bases[0]}/api/sessions", json={"session_id": session_id}, headers=USER
            )
    ledger, survived = Ledger(), Counter[str]()
    started = time.perf_counter()
    stop_at = started + args.seconds
    await asyncio.gather(
        faults(proxy, llm, stop_at, survived),
        *(client_loop(bases, sessions, ledger, stop_at, seed) for seed in range(args.clients)),
    )
    elapsed = time.perf_counter() - started
    await asyncio.sleep(3)  # replies of hung-up streams finish; orphans would be found
    return ledger, survived, elapsed


Replicas = list[tuple[str, dict[str, str]]]  # each one's DATABASE_URL and other settings


def _one_server(stack: ExitStack) -> tuple[str, Replicas, Outage]:
    """A scratch database; both replicas reach it through the proxy the faults cut."""
    database_url = stack.enter_context(scratch_database())
    server = make_url(database_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 3306).start()
    stack.callback(proxy.stop)
    proxied = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    return database_url, [(proxied, {}), (proxied, {})], proxy


def _cluster(stack: ExitStack) -> Cluster:
    cluster = Cluster()
    stack.callback(cluster.close)
    cluster.start()
    cluster.nodes[0].query("CREATE DATABASE soak CHARACTER SET utf8mb4")
    return cluster


def _galera(stack: ExitStack) -> tuple[str, Replicas, Outage]:
    """A 3-node cluster: one replica writes through node 1 (behind the proxy the faults cut)
    and fails over to node 2; the other writes through node 2, then node 3."""
    cluster = _cluster(stack)
    first, second, third = cluster.nodes
    proxy = TcpProxy("127.0.0.1", first.sql).start()
    stack.callback(proxy.stop)
    replicas = [
        (
            f"mysql+aiomysql://root@127.0.0.1:{proxy.port}/soak",
            {"DATABASE_HOSTS": f"127.0.0.1:{proxy.port},127.0.0.1:{second.sql}"},
        ),
        (
            second.url + "soak",
            {"DATABASE_HOSTS": f"127.0.0.1:{second.sql},127.0.0.1:{third.sql}"},
        ),
    ]
    return third.url + "soak", replicas, proxy


def _haproxy(stack: ExitStack) -> tuple[str, Replicas, Outage]:
    """A 3-node cluster behind HAProxy (bench/haproxy.py), both replicas writing through it;
    the faults stop its writer, node 1, which rejoins a second later."""
    cluster = _cluster(stack)
    port = stack.enter_context(haproxy(cluster))
    through = f"mysql+aiomysql://root@127.0.0.1:{port}/soak"
    return (
        cluster.nodes[2].url + "soak",
        [(through, {}), (through, {})],
        NodeStopped(cluster, cluster.nodes[0]),
    )


DATABASES = {
    "one server": _one_server,
    "galera, 3 nodes": _galera,
    "galera behind haproxy": _haproxy,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--galera", action="store_true", help="on a 3-node Galera cluster (tests/galera.py)"
    )
    parser.add_argument(
        "--haproxy", action="store_true", help="on the cluster behind HAProxy (one writer)"
    )
    args = parser.parse_args()
    llm = FakeLLM().start()
    llm.reply = lambda messages: "ok " + " ".join(["word"] * 8)
    llm.chunk_delay = 0.005
    env = {
        "AUTH_JWT_SECRET": JWT_SECRET,
        "TURN_LOCK_LEASE_SECONDS": "3",
        "DB_CONNECT_TIMEOUT_SECONDS": "1",
        "LLM_TIMEOUT_SECONDS": "5",
    }
    with ExitStack() as stack:
        stack.callback(llm.stop)
        database = (
            "galera behind haproxy"
            if args.haproxy
            else "galera, 3 nodes"
            if args.galera
            else "one server"
        )
        database_url, replicas, proxy = DATABASES[database](stack)
        bases = [
            stack.enter_context(service(url, llm.base_url, env | extra))[0]
            for url, extra in replicas
        ]
        ledger, survived, elapsed = asyncio.run(soak(bases, args, proxy, llm))
        verdict = check(database_url, ledger)
    figures = {
        "database": database,
        "clients": args.clients,
        "sessions": args.sessions,
        "seconds": round(elapsed, 1),
        "turns_completed": ledger.turns,
        "turns_per_second": ledger.turns / elapsed,
        "turn_p50_ms": statistics.median(ledger.latencies) * 1000 if ledger.latencies else None,
        "turn_p99_ms": sorted(ledger.latencies)[int(len(ledger.latencies) * 0.99) - 1] * 1000
        if ledger.latencies
        else None,
        "faults_survived": dict(survived),
        "outcomes": dict(sorted(ledger.outcomes.items())),
        **verdict,
    }
    for key, value in figures.items():
        print(f"{key:32} {value}")
    write_results("soak", figures)
    if verdict["problems"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
