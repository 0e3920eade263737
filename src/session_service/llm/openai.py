"""langchain-openai's ChatOpenAI, minus two round trips through the OpenAI client's types.

Requests: langchain-openai turns the messages into the wire's JSON dicts; the OpenAI client
then walks the whole body again against its typed-dict unions (openai-python's
`_transform_recursive`), which for plain chat messages changes nothing but costs about half of
a turn's CPU and grows with the history sent (openai/openai-python#3616; litellm and
hermes-agent skip it the same way). The client merges `extra_body` into the JSON after that
walk, so the messages are carried there: the request on the wire is byte for byte the same.

Streamed replies: the client builds a typed `ChatCompletionChunk` of every chunk's JSON, and
langchain-openai turns it straight back into a dict (`model_dump`) to build its message chunk
— most of the CPU a streamed piece costs (bench/llm_stream.py). The client's own custom stream
type (`parse(to=AsyncStream[object])`) hands langchain-openai the JSON dicts it accepts as
they are; the client still reads the events, raises on an `error` event and closes the stream.
"""

from __future__ import annotations

from typing import Any, Self

from langchain_core.language_models import LanguageModelInput
from langchain_openai import ChatOpenAI
from openai import AsyncStream
from pydantic import model_validator


class ChatOpenAIPassThrough(ChatOpenAI):
    @model_validator(mode="after")
    def _stream_wire_chunks(self) -> Self:
        if self.async_client is not None and not isinstance(self.async_client, _WireChunks):
            self.async_client = _WireChunks(self.async_client)
        return self

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        messages = payload.get("messages")
        if isinstance(messages, list) and messages:
            # `messages=[]` keeps the required argument and the key's place in the JSON.
            payload["extra_body"] = {"messages": messages, **(payload.get("extra_body") or {})}
            payload["messages"] = []
        return payload


class _WireChunks:
    """The client's `chat.completions`, whose streams yield each chunk's JSON as a dict."""

    def __init__(self, completions: Any) -> None:
        self._completions = completions

    async def create(self, **payload: Any) -> Any:
        if not payload.get("stream"):
            return await self._completions.create(**payload)
        response = await self._completions.with_raw_response.create(**payload)
        return response.parse(to=AsyncStream[object])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)
