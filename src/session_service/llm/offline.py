"""A deterministic chat model that needs no network: it answers from what it is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from session_service.llm.prompts import TITLE_PROMPT

MODEL_NAME = "offline"


TITLE_WORDS = 8


def offline_reply(messages: list[BaseMessage]) -> str:
    """Say that it is offline, quote the question, count the history before it; asked for a
    title (TITLE_PROMPT), the question's first words."""
    conversation = [m for m in messages if not isinstance(m, SystemMessage)]
    question = conversation[-1].text if conversation else ""
    if messages and messages[0].text == TITLE_PROMPT:
        return " ".join(question.split()[:TITLE_WORDS])
    earlier = len(conversation) - 1 if conversation else 0
    grounded = any("Knowledge:" in m.text for m in messages if isinstance(m, SystemMessage))
    reply = (
        f'[offline model] You asked: "{question}". '
        f"This conversation has {earlier} earlier message{'s' if earlier != 1 else ''}."
    )
    if grounded:
        reply += " I was given knowledge-base context for this answer."
    return reply


def _usage(messages: list[BaseMessage], reply: str) -> UsageMetadata:
    prompt_words = sum(len(m.text.split()) for m in messages)
    reply_words = len(reply.split())
    return UsageMetadata(
        input_tokens=prompt_words,
        output_tokens=reply_words,
        total_tokens=prompt_words + reply_words,
    )


class OfflineChatModel(BaseChatModel):
    """Answers without a network, word by word when streamed; same input, same answer."""

    @property
    def _llm_type(self) -> str:
        return "session-service-offline"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = offline_reply(messages)
        message = AIMessage(
            content=reply,
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
        return self._generate(messages, stop)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
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
        for chunk in self._stream(messages, stop):
            # A word at a time, as over a network: a stream's follower sends each on its own
            # rather than the whole reply as one delta (chat.generation coalesces what waits).
            await asyncio.sleep(0)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
