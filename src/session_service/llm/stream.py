"""The LLM's answer to a prompt as the turn reads it: piece by piece, each within
LLM_TIMEOUT_SECONDS, timed in the metrics, any failure turned into the service's error; and
what the answer says of itself (the model, the token usage)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk

from session_service import metrics
from session_service.errors import ServiceError
from session_service.llm.deadline import PieceTimeout, Stopped, Stopper
from session_service.llm.errors import llm_error


async def timed_pieces(
    pieces: AsyncGenerator[AIMessageChunk], timeout_seconds: float, stopper: Stopper
) -> AsyncIterator[AIMessageChunk]:
    """`pieces`; waiting longer than `timeout_seconds` for any of them fails it (504). The
    `stopper` ends them early (`stopper.cut` then says so), closing the LLM's request."""
    started, outcome = time.perf_counter(), metrics.LlmOutcome.ERROR
    try:
        async with PieceTimeout(timeout_seconds, stopper) as timeout:
            async for chunk in pieces:
                timeout.came()
                yield chunk
        outcome = metrics.LlmOutcome.OK
    except Stopped:
        outcome = metrics.LlmOutcome.STOPPED
    except ServiceError:
        raise
    except Exception as exc:
        raise llm_error(exc) from exc
    finally:
        metrics.LLM_CALL_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        await pieces.aclose()


def add_answer_metadata(meta: dict[str, Any], chunk: AIMessageChunk) -> None:
    """The model's name and the token usage, from the chunks that carry them (what merging
    every chunk into one message gives, without merging them: usages add up)."""
    model = chunk.response_metadata.get("model_name") or chunk.response_metadata.get("model")
    if model and "model" not in meta:
        meta["model"] = model
    if chunk.usage_metadata:
        usage = meta.setdefault("usage", {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0})
        for key in usage:
            usage[key] += chunk.usage_metadata[key]  # type: ignore[literal-required]
