"""The chat model the service builds sends the same bytes as langchain-openai's ChatOpenAI.

It hands the messages to the OpenAI client already in wire form (skipping the client's second
walk over the body); this proves nothing on the wire changes, streamed or not.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from session_service.config import Settings
from session_service.llm.errors import llm_error
from session_service.llm.factory import build_chat_model, close_chat_model
from session_service.llm.openai import ChatOpenAIPassThrough
from tests.fakes.openai import FakeLLM, ToolCall


@pytest.fixture
async def ours(fake_llm: FakeLLM) -> AsyncIterator[BaseChatModel]:
    """The chat model the service builds, closed after the test."""
    model = build_chat_model(
        Settings(llm_provider="openai", llm_base_url=fake_llm.base_url, llm_model="m")
    )
    yield model
    await close_chat_model(model)


PROMPT: list[BaseMessage] = [
    SystemMessage(content="You are helpful.\n\nKnowledge:\n[1] a fact"),
    HumanMessage(content='first question 🙂 with "quotes" and\nlines'),
    AIMessage(content="first answer"),
    HumanMessage(content="second question, 日本語"),
]


async def test_the_request_body_is_byte_for_byte_chatopenai_s(
    fake_llm: FakeLLM, ours: BaseChatModel
) -> None:
    assert isinstance(ours, ChatOpenAIPassThrough)
    plain = ChatOpenAI(
        model="m",
        base_url=fake_llm.base_url,
        api_key=SecretStr("unused"),
        max_retries=0,
        stream_usage=True,
        timeout=ours.request_timeout,
    )

    for model in (plain, ours):
        answer = await model.ainvoke(PROMPT)
        assert answer.content == "echo: second question, 日本語"
        streamed = "".join([chunk.text async for chunk in model.astream(PROMPT)])
        assert streamed == "echo: second question, 日本語"

    bodies = [r.body for r in fake_llm.server.requests]
    assert len(bodies) == 4
    plain_call, plain_stream, our_call, our_stream = bodies
    assert our_call == plain_call
    assert our_stream == plain_stream
    assert [m["content"] for m in fake_llm.calls[2]["messages"]] == [m.text for m in PROMPT]


async def test_extra_body_set_by_the_caller_is_kept(fake_llm: FakeLLM) -> None:
    model = ChatOpenAIPassThrough(
        model="m",
        base_url=fake_llm.base_url,
        api_key=SecretStr("unused"),
        max_retries=0,
        extra_body={"top_k": 5},
    )
    await model.ainvoke(PROMPT)
    (call,) = fake_llm.calls
    assert call["top_k"] == 5
    assert len(call["messages"]) == len(PROMPT)


async def test_streamed_chunks_are_chatopenai_s_built_from_the_wire_json(
    fake_llm: FakeLLM, ours: BaseChatModel
) -> None:
    plain = ChatOpenAI(
        model="m", base_url=fake_llm.base_url, api_key=SecretStr("unused"), stream_usage=True
    )

    def seen(chunk: AIMessageChunk) -> dict[str, Any]:
        return chunk.model_dump(exclude={"id"})

    plain_chunks = [seen(chunk) async for chunk in plain.astream(PROMPT)]
    our_chunks = [seen(chunk) async for chunk in ours.astream(PROMPT)]
    assert our_chunks == plain_chunks
    assert len(our_chunks) > 4  # a chunk a word, the finish, the usage, the last
    assert any(chunk["usage_metadata"] for chunk in our_chunks)
    assert any(chunk["response_metadata"].get("finish_reason") for chunk in our_chunks)


async def test_a_failed_stream_raises_what_chatopenai_raises(
    fake_llm: FakeLLM, ours: BaseChatModel
) -> None:
    fake_llm.fail_status = 429
    with pytest.raises(openai.RateLimitError):
        async for _chunk in ours.astream(PROMPT):
            pass


@pytest.mark.parametrize("how", ["refused", "dropped"])
async def test_a_refused_or_dropped_connection_is_a_502_not_a_timeout(
    fake_llm: FakeLLM, how: str
) -> None:
    """The aiohttp transport reports both as a connect timeout; the cause decides."""
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/v1"
    if how == "dropped":
        url = fake_llm.base_url
    fake_llm.drop = True
    ours = build_chat_model(Settings(llm_provider="openai", llm_base_url=url, llm_model="m"))
    try:
        with pytest.raises(openai.APIError) as raised:
            async for _chunk in ours.astream(PROMPT):
                pass
    finally:
        await close_chat_model(ours)
    error = llm_error(raised.value)
    assert error.status_code == 502
    assert error.detail.startswith("the LLM failed: ")


async def test_the_fake_llm_speaks_tool_calls_as_chatopenai_reads_them(
    fake_llm: FakeLLM, ours: BaseChatModel
) -> None:
    """Tool calls, streamed and not, reach langchain-openai as OpenAI sends them; the tool's
    answer goes back as a `tool` message."""

    @tool
    def lookup(query: str, limit: int) -> str:
        """Look something up."""
        return query * limit

    calls = [
        ToolCall("lookup", {"query": "北京", "limit": 2}),
        ToolCall("lookup", {"query": "x", "limit": 1}),
    ]
    fake_llm.reply = lambda messages: "done" if messages[-1]["role"] == "tool" else calls
    bound = ours.bind_tools([lookup])
    asked = await bound.ainvoke(PROMPT)
    assert isinstance(asked, AIMessage)
    assert [(c["name"], c["args"]) for c in asked.tool_calls] == [
        ("lookup", {"query": "北京", "limit": 2}),
        ("lookup", {"query": "x", "limit": 1}),
    ]
    assert fake_llm.calls[0]["tools"][0]["function"]["name"] == "lookup"
    streamed = None
    async for chunk in bound.astream(PROMPT):
        streamed = chunk if streamed is None else streamed + chunk
    assert isinstance(streamed, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [
        (c["name"], c["args"]) for c in asked.tool_calls
    ]
    assert streamed.response_metadata["finish_reason"] == "tool_calls"
    answered = [
        ToolMessage(content=str(lookup.invoke(c["args"])), tool_call_id=c["id"])
        for c in asked.tool_calls
    ]
    final = await bound.ainvoke([*PROMPT, asked, *answered])
    assert final.text == "done"
    sent = fake_llm.calls[-1]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["assistant", "tool", "tool"]
    assert sent[-2] == {
        "role": "tool",
        "tool_call_id": asked.tool_calls[0]["id"],
        "content": "北京北京",
    }
