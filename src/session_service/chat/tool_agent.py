"""AGENT_GROUNDING=tools: LangChain's agent (`create_agent`, compiled once per process) answers
over the session's window, calling the tools it chooses, at most AGENT_MAX_STEPS steps a turn.

Each tool call is a step: published as `tool_start` / `tool_end` between the deltas, kept in
the reply's `metadata.steps` (and its references in `metadata.references`). A tool that fails or
times out answers the model with its error, which the model answers around: never a failed
turn. After the last step the model is told not to call tools (`tool_choice: "none"`): it
must answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import StreamMode

from session_service.chat.generation import TOOL_END, TOOL_START
from session_service.chat.tools import TurnContext

OUTPUT_LENGTH = 4000  # characters of a tool's output the model reads and a step keeps

# the model's tokens, and the steps' events (written by `Steps`); a list: LangGraph tags each
# item with its mode only when given a list of modes
MODES: list[StreamMode] = ["messages", "custom"]


class ToolAgent:
    def __init__(self, llm: BaseChatModel, max_steps: int, timeout: float) -> None:
        self.llm = llm
        self.middleware = [Steps(max_steps, timeout)]
        self.compiled: tuple[tuple[str, ...], Any] | None = None  # (its tools' names, graph)

    def graph(self, tools: list[BaseTool]) -> Any:
        """The agent for these tools: compiled once, again only when the tools change (an
        MCP server came up)."""
        names = tuple(tool.name for tool in tools)
        if self.compiled is None or self.compiled[0] != names:
            graph = create_agent(  # type: ignore[misc]
                self.llm, tools, middleware=self.middleware, context_schema=TurnContext
            )
            self.compiled = (names, graph)
        return self.compiled[1]

    async def reply(
        self,
        tools: list[BaseTool],
        prompt: list[BaseMessage],
        context: TurnContext,
        meta: dict[str, Any],
        publish: Callable[[str, dict[str, Any]], None],
    ) -> AsyncGenerator[AIMessageChunk]:
        """The answer's chunks (an empty one at each step's start and end: progress); the steps
        into `meta` as they end, so a stopped turn keeps those done."""
        steps: dict[str, dict[str, Any]] = {}
        async for mode, data in self.graph(tools).astream(
            {"messages": prompt},
            context=context,
            stream_mode=MODES,
        ):
            if mode == "custom":
                name, event = data
                publish(name, event)
                _record(meta, steps, name, event)
                yield AIMessageChunk(content="")
                continue
            chunk, info = data
            if info.get("langgraph_node") == "model" and isinstance(chunk, AIMessageChunk):
                yield chunk


def _record(
    meta: dict[str, Any], steps: dict[str, dict[str, Any]], name: str, event: dict[str, Any]
) -> None:
    if name == TOOL_START:
        steps[event["id"]] = dict(event)
        return
    step = steps[event["id"]] | {k: v for k, v in event.items() if k != "id"}
    meta.setdefault("steps", []).append(step)
    if step.get("references"):
        meta.setdefault("references", []).extend(step["references"])


class Steps(AgentMiddleware):
    """Each tool call as a step: announced, timed out, its failure given to the model; and no
    more tool calls after `max_steps` steps."""

    def __init__(self, max_steps: int, timeout: float) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.timeout = timeout

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        if _steps_taken(request.messages) < self.max_steps:
            return await handler(request)
        response = await handler(request.override(tool_choice="none"))
        # a server that calls tools all the same: its calls are dropped, the turn ends
        response.result = [_without_calls(message) for message in response.result]
        return response

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[Any]],
    ) -> Any:
        call, write = request.tool_call, request.runtime.stream_writer
        step_id, tool = str(call["id"]), call["name"]
        write((TOOL_START, {"id": step_id, "tool": tool, "input": call["args"]}))
        started = time.perf_counter()
        end: dict[str, Any] = {"id": step_id}
        try:
            async with asyncio.timeout(self.timeout):
                result = await handler(request)
        except Exception as exc:  # the model's to answer around
            error = described(exc)
            if isinstance(exc, TimeoutError):
                error = f"the tool took longer than {self.timeout:g} s"
            end |= {"output": "", "error": error}
            result = ToolMessage(
                content=f"Error: {error}", tool_call_id=step_id, name=tool, status="error"
            )
        else:
            end["output"] = output = _text(result)[:OUTPUT_LENGTH]
            if isinstance(result, ToolMessage):
                artifact = result.artifact if isinstance(result.artifact, dict) else {}
                if artifact.get("references"):
                    end["references"] = artifact["references"]
                if result.status == "error":
                    end["error"] = output
                result = ToolMessage(  # what the model reads: no more than the step keeps
                    content=output,
                    tool_call_id=result.tool_call_id,
                    name=result.name,
                    status=result.status,
                    artifact=result.artifact,
                )
        end["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        write((TOOL_END, end))
        return result


def described(exc: BaseException) -> str:
    """What failed, from inside the exception groups task groups raise (MCP's do)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _without_calls(message: BaseMessage) -> BaseMessage:
    if isinstance(message, AIMessage) and message.tool_calls:
        return message.model_copy(update={"tool_calls": [], "invalid_tool_calls": []})
    return message


def _steps_taken(messages: list[Any]) -> int:
    """The model's calls for tools since the user's question."""
    taken = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage) and message.tool_calls:
            taken += 1
    return taken


def _text(result: Any) -> str:
    """A tool's output as text (an MCP tool's is a list of content blocks)."""
    content = result.content if isinstance(result, ToolMessage) else result
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    return str(content)
