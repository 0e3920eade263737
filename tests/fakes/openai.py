"""A fake OpenAI-compatible LLM: `POST /v1/chat/completions`, streaming and not, with knobs.

By default it answers `echo: <the last user message>` at once. Tests turn the knobs:
`delay` before answering, `fail_status` (an HTTP error), `drop` (close the connection),
`chunk_delay` between streamed words, `drop_after_chunks` (cut a stream short), `reply`.
A `reply` may answer with tool calls instead of text (a list of `ToolCall`), as OpenAI's API
does: `message.tool_calls` with `finish_reason: "tool_calls"`, or streamed as `delta.tool_calls`
pieces (each call's id and name, then its arguments in two halves); asked with
`tool_choice: "none"`, it answers NO_MORE_TOOLS instead.
Every request is recorded, so a test can read exactly what the LLM was sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.http import DropConnection, FakeServer, Reply, Request, Stream

MODEL = "fake-model"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


Answer = str | list[ToolCall]
_GOING = {"finish_reason": None}
NO_MORE_TOOLS = "I answer with what I have."  # a streamed chunk's choice, before the last


def echo(messages: list[dict[str, Any]]) -> str:
    questions = [m["content"] for m in messages if m["role"] == "user"]
    return f"echo: {questions[-1] if questions else ''}"


class FakeLLM:
    def __init__(self) -> None:
        self.delay = 0.0
        self.fail_status: int | None = None
        self.drop = False
        self.chunk_delay = 0.0
        self.drop_after_chunks: int | None = None
        self.reply: Callable[[list[dict[str, Any]]], Answer] = echo
        self.obey_tool_choice = True  # False: as a server that calls tools when told "none"
        self._ids = itertools.count(1)
        self.server = FakeServer(self._handle)

    def start(self) -> FakeLLM:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The JSON bodies of every completion request, in order."""
        return [r.json for r in self.server.requests if r.path.endswith("/chat/completions")]

    async def _handle(self, request: Request) -> Reply | Stream:
        if request.method != "POST" or not request.path.endswith("/v1/chat/completions"):
            return Reply(404, {"error": {"message": "not found"}})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.drop:
            raise DropConnection
        if self.fail_status is not None:
            return Reply(
                self.fail_status,
                {"error": {"message": "the fake LLM was told to fail", "type": "server_error"}},
            )
        body = request.json
        answer = self.reply(body["messages"])
        told_none = body.get("tool_choice") == "none" and self.obey_tool_choice
        if told_none and not isinstance(answer, str):
            answer = NO_MORE_TOOLS  # as OpenAI does: told not to call tools, it answers
        text = answer if isinstance(answer, str) else ""
        calls = [] if isinstance(answer, str) else self._wire_calls(answer)
        completion_id = f"chatcmpl-{next(self._ids)}"
        usage = {
            "prompt_tokens": sum(len(str(m["content"]).split()) for m in body["messages"]),
            "completion_tokens": len(text.split()) + len(calls),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            usage_sent = usage if include_usage else None
            if calls:
                return Stream(self._call_chunks(completion_id, calls, usage_sent))
            return Stream(self._chunks(completion_id, text, usage_sent))
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            return Reply(200, self._completion(completion_id, message, "tool_calls", usage))
        message = {"role": "assistant", "content": text}
        return Reply(200, self._completion(completion_id, message, "stop", usage))

    def _wire_calls(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        return [
            {
                "id": f"call_{next(self._ids)}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in calls
        ]

    @staticmethod
    def _completion(
        completion_id: str, message: dict[str, Any], finish: str, usage: dict[str, int]
    ) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }

    async def _call_chunks(
        self, completion_id: str, calls: list[dict[str, Any]], usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        event = _events(completion_id)
        yield event([{"index": 0, "delta": {"role": "assistant", "content": None}, **_GOING}])
        for index, call in enumerate(calls):
            function = call["function"]
            opening = {**call, "index": index, "function": {**function, "arguments": ""}}
            yield event([{"index": 0, "delta": {"tool_calls": [opening]}, **_GOING}])
            half = len(function["arguments"]) // 2
            for piece in (function["arguments"][:half], function["arguments"][half:]):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                more = {"index": index, "function": {"arguments": piece}}
                yield event([{"index": 0, "delta": {"tool_calls": [more]}, **_GOING}])
        yield event([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
        if usage is not None:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"

    async def _chunks(
        self, completion_id: str, text: str, usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        event = _events(completion_id)
        words = text.split(" ")
        for index, word in enumerate(words):
            if self.drop_after_chunks is not None and index >= self.drop_after_chunks:
                raise DropConnection
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            piece = word if index == len(words) - 1 else word + " "
            delta = {"content": piece} if index else {"role": "assistant", "content": piece}
            yield event([{"index": 0, "delta": delta, "finish_reason": None}])
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"


def _events(completion_id: str) -> Callable[..., bytes]:
    """The `data:` lines of one streamed completion's chunks."""

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    return event
