"""CPU per streamed chunk on the service's side of an LLM stream: langchain-openai's ChatOpenAI
as it comes (its own per-chunk timeout: a task per chunk), without that timeout (the service
times every piece itself, LLM_TIMEOUT_SECONDS), and the service's model (also without the
OpenAI client's typed chunk objects: llm/openai.py, and with the client's aiohttp
transport: llm/factory.py).

    .venv/bin/python -m bench.llm_stream [--streams 10] [--words 400] [--rounds 3]

The fake OpenAI-compatible LLM streams one chunk a word from a thread of its own; only the
event loop's thread is timed (`time.thread_time`). Rounds alternate the models; medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from bench.common import write_results
from session_service.config import Settings
from session_service.llm.factory import build_chat_model, close_chat_model
from session_service.llm.openai import ChatOpenAIPassThrough
from tests.fakes.openai import FakeLLM


def _model(
    model_class: type[ChatOpenAI], base_url: str, **options: Any
) -> Callable[[], ChatOpenAI]:
    return lambda: model_class(
        model="m",
        base_url=base_url,
        api_key=SecretStr("k"),
        max_retries=0,
        stream_usage=True,
        **options,
    )


def models(base_url: str) -> dict[str, Callable[[], BaseChatModel]]:
    service = Settings(llm_provider="openai", llm_base_url=base_url, llm_model="m")
    return {
        "ChatOpenAI as it comes (120 s per chunk)": _model(ChatOpenAI, base_url),
        "ChatOpenAI, stream_chunk_timeout=None": _model(
            ChatOpenAI, base_url, stream_chunk_timeout=None
        ),
        "+ chunks as the wire's JSON (no typed objects)": _model(
            ChatOpenAIPassThrough, base_url, stream_chunk_timeout=None
        ),
        "+ aiohttp transport: the service's model": lambda: build_chat_model(service),
    }


async def cpu_per_chunk(model: BaseChatModel, streams: int, words: int) -> float:
    question = [HumanMessage(content=" ".join(f"w{i}" for i in range(words)))]
    chunks, started = 0, time.thread_time()
    for _ in range(streams):
        async for _chunk in model.astream(question):
            chunks += 1
    return (time.thread_time() - started) / chunks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--words", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    llm = FakeLLM().start()
    built = models(llm.base_url)
    runs: dict[str, list[float]] = {name: [] for name in built}

    async def measure() -> None:  # one loop: langchain-openai shares its HTTP client
        made = {name: build() for name, build in built.items()}
        for _ in range(args.rounds):
            for name, model in made.items():
                runs[name].append(await cpu_per_chunk(model, args.streams, args.words))
        for model in made.values():
            await close_chat_model(model)

    try:
        asyncio.run(measure())
    finally:
        llm.stop()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in medians.items():
        print(f"{name:45} {value:8.1f} us CPU per chunk")
    write_results(
        "llm_stream",
        {
            "streams": args.streams,
            "words": args.words,
            "rounds": args.rounds,
            "us_cpu_per_chunk": medians,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
