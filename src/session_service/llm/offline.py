"""A deterministic chat model that needs no network: it answers from what it is given."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from session_service.llm.prompts import TITLE_PROMPT

MODEL_NAME = "offline"


TITLE_WORDS = 8
TOOL_QUOTE = 200  # characters of a tool's answer the reply quotes


def offline_reply(messages: list[BaseMessage]) -> str:
    """Say that it is offline, quote the question, count the history before it, and quote
    what a tool answered it; asked for a title (TITLE_PROMPT), the question's first words."""
    conversation, at = _asked(messages)
    question = conversation[at].text if conversation else ""
    if messages and messages[0].text == TITLE_PROMPT:
        return " ".join(question.split()[:TITLE_WORDS])
    grounded = any("Knowledge:" in m.text for m in messages if isinstance(m, SystemMessage))
    reply = (
        f'[offline model] You asked: "{question}". '
        f"This conversation has {at} earlier message{'s' if at != 1 else ''}."
    )
    if grounded:
        reply += " I was given knowledge-base context for this answer."
    for result in conversation[at + 1 :]:
        if isinstance(result, ToolMessage):
            found = " ".join(result.text.split())[:TOOL_QUOTE]
            reply += f' {result.name} answered: "{found}".'
    return reply


def offline_call(
    messages: list[BaseMessage], tools: list[dict[str, Any]] | None, tool_choice: Any
) -> ToolCall | None:
    """Given tools (and not told to answer), the first one, asked the question, once."""
    if not tools or tool_choice == "none":
        return None
    conversation, at = _asked(messages)
    if not conversation or len(conversation) > at + 1:  # no question, or called already
        return None
    function = tools[0]["function"]
    parameters = function.get("parameters", {})
    argument = next(iter(parameters.get("required") or parameters.get("properties") or ["input"]))
    question = conversation[at].text
    return ToolCall(name=function["name"], args={argument: question}, id=f"offline-{at}")


def _asked(messages: list[BaseMessage]) -> tuple[list[BaseMessage], int]:
    """The conversation without the system prompt, and where in it the question is."""
    conversation = [m for m in messages if not isinstance(m, SystemMessage)]
    questions = [i for i, m in enumerate(conversation) if isinstance(m, HumanMessage)]
    return conversation, questions[-1] if questions else max(len(conversation) - 1, 0)


def _usage(messages: list[BaseMessage], reply: str) -> UsageMetadata:
    prompt_words = sum(len(m.text.split()) for m in messages)
    reply_words = len(reply.split())
    return UsageMetadata(
        input_tokens=prompt_words,
        output_tokens=reply_words,
        total_tokens=prompt_words + reply_words,
    )


class OfflineChatModel(BaseChatModel):
    """Answers without a network, word by word when streamed; same input, same answer. Given
    tools, it calls the first with the question, then answers quoting what it returned."""

    @property
    def _llm_type(self) -> str:
        return "session-service-offline"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        described = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=described, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = offline_call(messages, kwargs.get("tools"), kwargs.get("tool_choice"))
        reply = "" if call else offline_reply(messages)
        message = AIMessage(
            content=reply,
            tool_calls=[call] if call else [],
            usage_metadata=_usage(messages, reply),
            response_metadata={"model_name": MODEL_NAME},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = offline_call(messages, kwargs.get("tools"), kwargs.get("tool_choice"))
        if call:
            arguments = json.dumps(call["args"])
            piece = tool_call_chunk(name=call["name"], args=arguments, id=call["id"], index=0)
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[piece],
                    usage_metadata=_usage(messages, ""),
                    response_metadata={"model_name": MODEL_NAME},
                    chunk_position="last",
                )
            )
            return
        reply = offline_reply(messages)
        words = reply.split(" ")
        for index, word in enumerate(words):
            text = word if index == len(words) - 1 else word + " "
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(messages, reply),
                response_metadata={"model_name": MODEL_NAME},
                chunk_position="last",
            )
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop, **kwargs):
            # A word at a time, as over a network: a stream's follower sends each on its own
            # rather than the whole reply as one delta (chat.generation coalesces what waits).
            await asyncio.sleep(0)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
