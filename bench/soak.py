"""A bounded soak: concurrent clients on two replicas, faults on a schedule, then a checker.

    .venv/bin/python -m bench.soak [--clients 16] [--sessions 8] [--seconds 30]

Two `session-service serve` processes share one MariaDB database, reached through a TCP proxy
that the schedule cuts for a second now and then; the fake LLM fails or drops connections on
its own schedule. Clients mix turns, streamed turns (some hanging up after the first delta),
reads, lists, deletes with re-creation, and admin cleanups, on few enough sessions that turns
on one session collide. Afterwards the checker reads MySQL and proves that every acknowledged
message is stored once and unchanged, in its session, with unique sequence numbers; that every
acknowledged answer directly follows its question and every stored reply follows a question;
that no reply is left in progress; and that the messages of deleted sessions are gone.
Prints the load held and the faults survived; exits 1 if the checker found a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench.common import scratch_database, service, write_results
from tests.fakes.openai import FakeLLM
from tests.fakes.tcp_proxy import TcpProxy
from tests.helpers import JWT_SECRET, auth, mysql_connect

USER = auth("soak-user")
ADMIN = auth("soak-admin", admin=True)


@dataclass
class Ledger:
    """What the service acknowledged: message ids by session, and which sessions were reset."""

    acked: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # id, role, text
    pairs: list[tuple[int, int]] = field(default_factory=list)  # question and its answer
    deleted: list[int] = field(default_factory=list)  # acknowledged, then deleted on purpose
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    turns: int = 0

    def ack(self, session_id: str, message: dict[str, Any]) -> None:
        self.acked.setdefault(session_id, []).append(
            (message["id"], message["role"], message["content"])
        )

    def reset(self, session_id: str) -> None:
        self.deleted.extend(message_id for message_id, _, _ in self.acked.pop(session_id, []))


async def client_loop(
    bases: list[str], sessions: list[str], ledger: Ledger, stop_at: float, seed: int
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=60) as http:
        while time.perf_counter() < stop_at:
            base, session_id = rng.choice(bases), rng.choice(sessions)
            path = f"{base}/api/sessions/{session_id}"
            roll = rng.random()
            started = time.perf_counter()
            try:
                if roll < 0.55:
                    kind = "turn"
                    response = await http.post(
                        f"{path}/messages", json={"content": f"q{rng.random():.6f}"}, headers=USER
                    )
                    if response.status_code == 201:
                        body = response.json()
                        ledger.ack(session_id, body["user_message"])
                        ledger.ack(session_id, body["assistant_message"])
                        ledger.pairs.append(
                            (body["user_message"]["id"], body["assistant_message"]["id"])
                        )
                        ledger.turns += 1
                        ledger.latencies.append(time.perf_counter() - started)
                elif roll < 0.75:
                    kind = "stream"
                    hang_up = rng.random() < 0.3
                    await stream(http, path, session_id, ledger, hang_up, rng)
                    response = None
                elif roll < 0.85:
                    kind, response = "get", await http.get(path, headers=USER)
                elif roll < 0.93:
                    kind, response = "list", await http.get(f"{base}/api/sessions", headers=USER)
                elif roll < 0.94:
                    kind = "delete"
                    response = await http.delete(path, headers=USER)
                    if response.status_code in (204, 404):
                        ledger.reset(session_id)
                    await http.post(
                        f"{base}/api/sessions", json={"session_id": session_id}, headers=USER
                    )
                else:
                    kind = "cleanup"
                    response = await http.post(
                        f"{base}/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=ADMIN
                    )
                if response is not None:
                    ledger.outcomes[f"{kind} {response.status_code}"] += 1
                    if response.status_code == 503:
                        await asyncio.sleep(0.05)  # the database is away: back off a little
            except httpx.HTTPError as exc:
                ledger.outcomes[f"transport {type(exc).__name__}"] += 1


async def stream(
    http: httpx.AsyncClient,
    path: str,
    session_id: str,
    ledger: Ledger,
    hang_up: bool,
    rng: random.Random,
) -> None:
    async with http.stream(
        "POST",
        f"{path}/messages",
        json={"content": f"s{rng.random():.6f}", "stream": True},
        headers=USER,
    ) as response:
        if response.status_code != 201:
            ledger.outcomes[f"stream {response.status_code}"] += 1
            if response.status_code == 503:
                await asyncio.sleep(0.05)
            return
        event, question = "", 0
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event in ("message_start", "message_end"):
                data = json.loads(line.removeprefix("data: "))
                if event == "message_start":
                    ledger.ack(session_id, data["user_message"])
                    question = data["user_message"]["id"]
                    if hang_up:
                        ledger.outcomes["stream hung up"] += 1
                        return
                else:
                    ledger.ack(session_id, data["assistant_message"])
                    ledger.pairs.append((question, data["assistant_message"]["id"]))
                    ledger.turns += 1
            elif line.startswith("data: ") and event == "error":
                ledger.outcomes["stream error event"] += 1
        ledger.outcomes["stream completed"] += 1


async def faults(proxy: TcpProxy, llm: FakeLLM, stop_at: float, survived: Counter[str]) -> None:
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


def check(database_url: str, ledger: Ledger) -> dict[str, int]:
    """Read MySQL and prove the ledger: every acknowledged message stored once, in order."""
    connection = mysql_connect(database_url)
    problems: list[str] = []
    checked = 0
    seq_of: dict[int, int] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM chat_sessions WHERE generating_message_id IS NOT NULL")
        (in_progress,) = cursor.fetchone()
        if in_progress:
            problems.append(f"{in_progress} replies still in progress")
        for session_id, acked in ledger.acked.items():
            cursor.execute(
                "SELECT id, seq, role, content, metadata FROM chat_messages WHERE session_id = %s"
                " ORDER BY seq",
                (session_id,),
            )
            rows = cursor.fetchall()
            by_id = {row[0]: row for row in rows}
            seqs = [row[1] for row in rows]
            if seqs != sorted(set(seqs)):
                problems.append(f"{session_id}: sequence numbers repeat")
            for index, (_, seq, role, _content, meta) in enumerate(rows):
                if '"streaming"' in meta:
                    problems.append(f"{session_id}: message {seq} still streaming")
                if role == "assistant" and (index == 0 or rows[index - 1][2] != "user"):
                    problems.append(f"{session_id}: reply {seq} does not follow a question")
            for message_id, role, content in acked:
                checked += 1
                row = by_id.get(message_id)
                if row is None:
                    problems.append(f"{session_id}: acknowledged {role} {message_id} is missing")
                elif row[2] != role or row[3] != content:
                    problems.append(f"{session_id}: message {message_id} changed")
            seq_of.update({row[0]: row[1] for row in rows})
        for question, answer in ledger.pairs:
            if question in seq_of and answer in seq_of and seq_of[answer] != seq_of[question] + 1:
                problems.append(f"answer {answer} does not directly follow question {question}")
        if ledger.deleted:
            marks = ",".join(["%s"] * len(ledger.deleted))
            cursor.execute(
                f"SELECT COUNT(*) FROM chat_messages WHERE id IN ({marks})", ledger.deleted
            )
            (survivors,) = cursor.fetchone()
            if survivors:
                problems.append(f"{survivors} messages of deleted sessions are still stored")
    connection.close()
    for line in problems[:20]:
        print("PROBLEM", line)
    return {
        "acknowledged_messages_checked": checked,
        "deleted_messages_checked": len(ledger.deleted),
        "problems": len(problems),
    }


async def soak(bases: list[str], args: argparse.Namespace, proxy: TcpProxy, llm: FakeLLM) -> Any:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    llm = FakeLLM().start()
    llm.reply = lambda messages: "ok " + " ".join(["word"] * 8)
    llm.chunk_delay = 0.005
    with scratch_database() as database_url, ExitStack() as stack:
        server = make_url(database_url)
        proxy = TcpProxy(server.host or "127.0.0.1", server.port or 3306).start()
        stack.callback(proxy.stop)
        stack.callback(llm.stop)
        proxied = server.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        env = {
            "AUTH_JWT_SECRET": JWT_SECRET,
            "TURN_LOCK_LEASE_SECONDS": "3",
            "DB_CONNECT_TIMEOUT_SECONDS": "1",
            "LLM_TIMEOUT_SECONDS": "5",
        }
        bases = [stack.enter_context(service(proxied, llm.base_url, env))[0] for _ in range(2)]
        ledger, survived, elapsed = asyncio.run(soak(bases, args, proxy, llm))
        verdict = check(database_url, ledger)
    figures = {
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
