"""Time to first delta through the service against the fake LLM's own time to first chunk.

    .venv/bin/python -m bench.streaming [--requests 200]

One client sends streamed turns one after another (a new session every 10 turns) through
`session-service serve` to a fake OpenAI-compatible LLM that streams at once; in between, it
asks the fake LLM directly with the same kind of request. The service's overhead is the
difference: everything from the request to the first `delta` event that is not the LLM.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench.common import scratch_database, service, write_results
from tests.fakes.openai import FakeLLM

TURNS_PER_SESSION = 10


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def first_delta(http: httpx.AsyncClient, session_id: str, content: str) -> float:
    started = time.perf_counter()
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": content, "stream": True},
    ) as response:
        elapsed = None
        async for line in response.aiter_lines():  # read to the end: the turn must finish
            if elapsed is None and line == "event: delta":
                elapsed = time.perf_counter() - started
    assert elapsed is not None, "no delta"
    return elapsed


async def first_chunk(llm: httpx.AsyncClient, content: str) -> float:
    started = time.perf_counter()
    async with llm.stream(
        "POST",
        "/chat/completions",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": content}]},
    ) as response:
        elapsed = None
        async for line in response.aiter_lines():
            if elapsed is None and line.startswith("data: {"):
                elapsed = time.perf_counter() - started
    assert elapsed is not None, "no chunk"
    return elapsed


async def measure(base: str, llm_url: str, requests: int) -> dict[str, float]:
    through, direct = [], []
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        httpx.AsyncClient(base_url=llm_url, timeout=30) as llm,
    ):
        session_id = ""
        for index in range(requests + 10):  # the first 10 warm up
            if index % TURNS_PER_SESSION == 0:
                created = await http.post("/api/sessions", json={"title": "bench"})
                session_id = created.json()["session_id"]
            service_time = await first_delta(http, session_id, f"question {index}")
            llm_time = await first_chunk(llm, f"question {index}")
            if index >= 10:
                through.append(service_time * 1000)
                direct.append(llm_time * 1000)
    overhead = [a - b for a, b in zip(through, direct, strict=True)]
    return {
        "requests": requests,
        "service_first_delta_p50_ms": statistics.median(through),
        "service_first_delta_p99_ms": percentile(through, 0.99),
        "llm_first_chunk_p50_ms": statistics.median(direct),
        "llm_first_chunk_p99_ms": percentile(direct, 0.99),
        "overhead_p50_ms": statistics.median(overhead),
        "overhead_p99_ms": percentile(overhead, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    llm = FakeLLM().start()
    try:
        with scratch_database() as database_url, service(database_url, llm.base_url) as (base, _):
            figures = asyncio.run(measure(base, llm.base_url, args.requests))
    finally:
        llm.stop()
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    for label, key in (
        ("first delta via the service", "service_first_delta"),
        ("first chunk from the LLM", "llm_first_chunk"),
        ("service overhead", "overhead"),
    ):
        print(f"{label:28}{figures[key + '_p50_ms']:>10.2f}{figures[key + '_p99_ms']:>10.2f}")
    write_results("streaming", figures)


if __name__ == "__main__":
    main()
