"""Streamed turns under load: N streams at once on one `serve` process, against the thinnest
relay on the same machine in the same run.

    .venv/bin/python -m bench.streams [--n 50 100 250 500 1000] [--words 92] [--pace-ms 50]

A paced fake OpenAI-compatible LLM (a process of its own) streams WORDS deltas PACE apart; the
light client (bench/stream_client.py) starts N streamed turns at once on N sessions of a fresh
`session-service serve` (MariaDB: TEST_DATABASE_URL or the local server; every setting at its
default unless given with --env), then the same N streams through bench/relay.py. Per N:
turns ok / refused up front (503) / failed after acceptance; first-delta and added-delay
(how much later than the LLM's pace each delta came) percentiles; the process's CPU per delta
and RSS per stream (peak over idle); its most database connections and lease renewals per
second; and, read back in SQL, how many accepted replies are not stored whole. Prints a table,
writes JSON and a chart (streams.png) to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomysql
import httpx
from sqlalchemy.engine import make_url

from bench.common import (
    RESULTS,
    aiomysql_options,
    cpu_seconds,
    other_app,
    scratch_database,
    service,
    write_results,
)
from bench.stream_client import Stream, percentile, stream_turn

FIELDS = ("ok", "refused", "failed", "lost", "first_p50_ms", "first_p99_ms", "added_p99_ms")


def paced_llm(port_out: Any, words: int, pace: float) -> None:
    """The fake LLM, in a process of its own so that the client's timing does not share it."""
    import uvloop

    from tests.fakes.openai import FakeLLM

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    llm = FakeLLM()
    llm.chunk_delay = pace
    llm.reply = lambda _messages: reply_text(words)
    llm.start()
    port_out.send(llm.base_url)
    time.sleep(24 * 3600)


def reply_text(words: int) -> str:
    return " ".join(f"word{index}" for index in range(words))


class Sampler:
    """The peak RSS of a process and of its database connections, every quarter second."""

    def __init__(self, pid: int, database_url: str | None) -> None:
        self.pid, self.database_url = pid, database_url
        self.rss_peak = self.rss_idle = rss_kib(pid)
        self.connections_peak = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        db = (
            await aiomysql.connect(**aiomysql_options(self.database_url))
            if self.database_url
            else None
        )
        name = make_url(self.database_url).database if self.database_url else None
        try:
            while True:
                self.rss_peak = max(self.rss_peak, rss_kib(self.pid))
                if db is not None:
                    async with db.cursor() as cursor:
                        await cursor.execute(
                            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s",
                            (name,),
                        )
                        (count,) = await cursor.fetchone()
                        self.connections_peak = max(self.connections_peak, count - 1)
                await asyncio.sleep(0.25)
        finally:
            if db is not None:
                db.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run_streams(
    base: str, pid: int, paths: list[str], content: str, database_url: str | None
) -> tuple[list[Stream], dict[str, Any]]:
    url = httpx.URL(base)
    host, port = url.host, url.port or 80
    cpu_before, at = cpu_seconds(pid), time.perf_counter()
    async with Sampler(pid, database_url) as sampler:
        streams = await asyncio.gather(
            *(stream_turn(host, port, path, {"content": content, "stream": True}) for path in paths)
        )
    wall = time.perf_counter() - at
    deltas = sum(len(stream.deltas) for stream in streams)
    accepted = sum(stream.accepted for stream in streams)
    return streams, {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu_seconds(pid) - cpu_before, 2),
        "cpu_per_delta_ms": round((cpu_seconds(pid) - cpu_before) / max(deltas, 1) * 1000, 3),
        "rss_per_stream_kib": round((sampler.rss_peak - sampler.rss_idle) / max(accepted, 1), 1),
        "db_connections_peak": sampler.connections_peak,
    }


def outcomes(streams: list[Stream], pace: float) -> dict[str, Any]:
    accepted = [s for s in streams if s.accepted]
    firsts = [s.first_delta * 1000 for s in accepted if s.first_delta is not None]
    added = [d * 1000 for s in accepted for d in s.added_delays(pace)]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "ok": sum(s.ended and s.error is None for s in accepted),
        "refused": sum(s.status == 503 for s in streams),
        "failed": sum(not s.ended or s.error is not None for s in accepted),
        "other": sum(not s.accepted and s.status != 503 for s in streams),
        "first_p50_ms": ms(percentile(firsts, 0.5)),
        "first_p99_ms": ms(percentile(firsts, 0.99)),
        "added_p50_ms": ms(percentile(added, 0.5)),
        "added_p99_ms": ms(percentile(added, 0.99)),
    }


async def not_stored_whole(database_url: str, streams: list[Stream], text: str) -> int:
    """Accepted turns whose reply is not in the database, whole and finished."""
    ids = [s.message_id for s in streams if s.message_id is not None]
    if not ids:
        return 0
    db = await aiomysql.connect(**aiomysql_options(database_url))
    try:
        async with db.cursor() as cursor:
            await cursor.execute(
                "SELECT id, content, metadata FROM chat_messages WHERE id IN %s", (ids,)
            )
            stored = {
                row[0]: (row[1], json.loads(row[2] or "{}")) for row in await cursor.fetchall()
            }
    finally:
        db.close()
    whole = {i for i, (content, meta) in stored.items() if content == text and "status" not in meta}
    return sum(i not in whole for i in ids)


async def service_round(
    base: str, pid: int, database_url: str, n: int, text: str, pace: float
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        made = asyncio.Semaphore(20)

        async def new_session() -> str:
            async with made:
                answer = await http.post("/api/sessions", json={"title": "bench"})
                return str(answer.raise_for_status().json()["session_id"])

        sessions = await asyncio.gather(*(new_session() for _ in range(n)))
        renewals_before = await lease_renewals(http)
        paths = [f"/api/sessions/{sid}/messages" for sid in sessions]
        streams, process = await run_streams(base, pid, paths, "go", database_url)
        renewals = await lease_renewals(http) - renewals_before
    figures = outcomes(streams, pace) | process
    figures["lease_renewals_per_s"] = round(renewals / process["wall_s"], 1)
    figures["lost"] = await not_stored_whole(database_url, streams, text)
    return figures


async def relay_round(base: str, pid: int, n: int, pace: float) -> dict[str, Any]:
    streams, process = await run_streams(base, pid, ["/"] * n, "go", None)
    return outcomes(streams, pace) | process


async def lease_renewals(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("session_turn_lease_renewals_total{")
    )


def chart(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [row["n"] for row in rows]
    figure, (delay, turns) = plt.subplots(1, 2, figsize=(10, 4))
    for who, style in (("service", "o-"), ("relay", "s--")):
        delay.plot(ns, [row[who]["added_p99_ms"] or 0 for row in rows], style, label=who)
    delay.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    delay.set(xscale="log", yscale="log", xlabel="streams at once", ylabel="p99 added delay (ms)")
    delay.legend()
    for key, label in (("ok", "ok"), ("refused", "refused (503)"), ("failed", "failed")):
        turns.plot(ns, [row["service"][key] for row in rows], "o-", label=label)
    turns.set(xscale="log", xlabel="streams at once", ylabel="turns", title="service")
    turns.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50, 100, 250, 500, 1000])
    parser.add_argument("--words", type=int, default=92)
    parser.add_argument("--pace-ms", type=float, default=50)
    parser.add_argument("--env", nargs="*", default=[], help="NAME=value for the service")
    args = parser.parse_args()
    pace, text = args.pace_ms / 1000, reply_text(args.words)
    env = dict(item.split("=", 1) for item in args.env)
    receive, send = multiprocessing.Pipe(duplex=False)
    llm = multiprocessing.Process(target=paced_llm, args=(send, args.words, pace), daemon=True)
    llm.start()
    llm_url = receive.recv()
    rows: list[dict[str, Any]] = []
    try:
        for n in args.n:
            row: dict[str, Any] = {"n": n}
            with scratch_database() as database_url:
                with service(database_url, llm_url, env) as (base, pid):
                    row["service"] = run(service_round(base, pid, database_url, n, text, pace))
                with other_app("bench.relay:app", database_url, llm_url) as (base, pid):
                    row["relay"] = run(relay_round(base, pid, n, pace))
            rows.append(row)
            report(row)
    finally:
        llm.terminate()
    written = write_results(
        "streams", {"words": args.words, "pace_ms": args.pace_ms, "env": env, "rows": rows}
    )
    chart(rows, RESULTS / "streams.png")
    print(f"chart: {RESULTS / 'streams.png'} ({written.name})")


def run(round_: Any) -> dict[str, Any]:
    result: dict[str, Any] = asyncio.run(round_)
    return result


def report(row: dict[str, Any]) -> None:
    line: Callable[[str, dict[str, Any]], str] = lambda who, f: (  # noqa: E731
        f"N={row['n']:5} {who:8} ok {f['ok']:5} refused {f['refused']:4} failed {f['failed']:4}"
        f" lost {f.get('lost', '-')!s:>3}  first p50/p99 {f['first_p50_ms']}/{f['first_p99_ms']}"
        f" ms  added p99 {f['added_p99_ms']} ms  cpu/delta {f['cpu_per_delta_ms']} ms"
        f"  rss/stream {f['rss_per_stream_kib']} KiB  db conns {f['db_connections_peak']}"
        f"  renewals/s {f.get('lease_renewals_per_s', '-')}  wall {f['wall_s']} s"
    )
    print(line("service", row["service"]), flush=True)
    print(line("relay", row["relay"]), flush=True)


if __name__ == "__main__":
    main()
