"""langchain-openai's ChatOpenAI, minus a second walk over every request body.

langchain-openai turns the messages into the wire's JSON dicts; the OpenAI client then walks
the whole body again against its typed-dict unions (openai-python's `_transform_recursive`),
which for plain chat messages changes nothing but costs about half of a turn's CPU and grows
with the history sent (openai/openai-python#3616; litellm and hermes-agent skip it the same
way). The client merges `extra_body` into the JSON after that walk, so the messages are
carried there: the request on the wire is byte for byte the same.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_openai import ChatOpenAI


class ChatOpenAIPassThrough(ChatOpenAI):
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
