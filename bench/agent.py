"""The tool-using agent against grounding first: the service's CPU per turn with
AGENT_GROUNDING=always, and with `tools` when the model calls no tool and when it calls one;
and how soon the answer's first delta follows a tool's end.

    .venv/bin/python -m bench.agent [--turns 100] [--rounds 3]

Three `session-service serve` processes (one per mode) on one fresh MariaDB database, with a
fake OpenAI-compatible LLM and a fake RAGFlow (retrieval over one dataset) in this process.
In each round, every mode takes TURNS streamed turns, one after another on one session each
(the same question; the LLM's answer is 40 words): its process's CPU time per turn, from
/proc. With a tool call, the client also times each turn's first delta after its `tool_end`
event. Medians over rounds. Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx

from bench.common import cpu_seconds, scratch_database, service, write_results
from tests.fakes.openai import FakeLLM, ToolCall
from tests.fakes.ragflow import API_KEY, CHAT_ID, FakeRagflow

ANSWER = " ".join(f"word{i}" for i in range(40))
MODES: dict[str, dict[str, str]] = {
    "always": {"AGENT_GROUNDING": "always"},
    "tools, no call": {"AGENT_GROUNDING": "tools"},
    "tools, one call": {"AGENT_GROUNDING": "tools"},
}


def _model(mode: str) -> Callable[[list[dict[str, Any]]], Any]:
    """The fake LLM's answers in `mode`: with one call, a search first, then the answer."""
    if mode != "tools, one call":
        return lambda _messages: ANSWER
    search = ToolCall("search_knowledge_base", {"query": "capital of France"})
    return lambda messages: ANSWER if messages[-1]["role"] == "tool" else [search]


async def _turns(base: str, pid: int, count: int) -> tuple[float, list[float]]:
    """CPU ms per turn of `count` streamed turns; each turn's first delta after a tool_end."""
    gaps: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        session_id = (await http.post("/api/sessions", json={"title": "bench"})).json()[
            "session_id"
        ]
        used = cpu_seconds(pid)
        for _ in range(count):
            ended = None
            async with http.stream(
                "POST",
                f"/api/sessions/{session_id}/messages",
                json={"content": "What is the capital of France?", "stream": True},
            ) as response:
                async for line in response.aiter_lines():
                    if line == "event: tool_end":
                        ended = time.perf_counter()
                    elif line == "event: delta" and ended is not None:
                        gaps.append((time.perf_counter() - ended) * 1000)
                        ended = None
        return (cpu_seconds(pid) - used) * 1000 / count, gaps


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    llm, ragflow = FakeLLM().start(), FakeRagflow().start()
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    gaps: list[float] = []
    try:
        with scratch_database() as database_url, ExitStack() as stack:
            served = {
                mode: stack.enter_context(
                    service(
                        database_url,
                        llm.base_url,
                        {
                            **env,
                            "RAGFLOW_BASE_URL": ragflow.url,
                            "RAGFLOW_API_KEY": API_KEY,
                            "RAGFLOW_CHAT_ID": CHAT_ID,
                            "RAGFLOW_DATASET_IDS": "ds-1",
                        },
                    )
                )
                for mode, env in MODES.items()
            }
            for _ in range(args.rounds):
                for mode, (base, pid) in served.items():
                    llm.reply = _model(mode)
                    per_turn, waited = asyncio.run(_turns(base, pid, args.turns))
                    cpu[mode].append(per_turn)
                    gaps += waited
    finally:
        llm.stop()
        ragflow.stop()
    figures = {mode: statistics.median(values) for mode, values in cpu.items()}
    always = figures["always"]
    print(f"{'mode':18}{'CPU ms/turn':>12}{'vs always':>11}")
    for mode, value in figures.items():
        print(f"{mode:18}{value:12.2f}{value / always:11.2f}")
    gap_p50 = statistics.median(gaps)
    print(f"first delta after a tool's end: p50 {gap_p50:.1f} ms over {len(gaps)} turns")
    results = {
        "turns": args.turns,
        "rounds": args.rounds,
        "cpu_ms_per_turn": figures,
        "over_always": {mode: value / always for mode, value in figures.items()},
        "first_delta_after_tool_ms_p50": gap_p50,
        "first_delta_after_tool_ms_p99": sorted(gaps)[int(0.99 * (len(gaps) - 1))],
    }
    write_results("agent", results)
    return results


if __name__ == "__main__":
    main()
