"""One agent per active session: the conversation as LangChain messages, answered by the LLM."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.utils import count_tokens_approximately

ROLE_TO_MESSAGE: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
}


def to_message(role: str, content: str) -> BaseMessage:
    return ROLE_TO_MESSAGE[role](content=content)


def message_tokens(message: BaseMessage) -> int:
    return count_tokens_approximately([message])


@dataclass(eq=False, slots=True)
class ChatAgent:
    """A session's conversation window, newest last, covering at least `token_budget` tokens.

    It takes and gives LangChain messages, but keeps each as (kind, text, tokens): a LangChain
    message object costs close to a kilobyte, and a pool holds many agents that are only
    spoken to now and then. `leaf_id` is the id of the newest message it holds, the end of the
    branch it knows: the turn compares it with the branch it answers on, to catch up on what
    another replica (or a failed turn) wrote meanwhile, or to rebuild on another branch.
    """

    session_id: str
    user_id: str
    session_created_at: datetime
    system_prompt: str
    token_budget: int
    leaf_id: int | None = None
    last_used: float = 0.0
    _history: deque[tuple[type[BaseMessage], str, int]] = field(default_factory=deque)
    _tokens: int = 0

    @property
    def message_count(self) -> int:
        """How many of the session's newest messages it holds."""
        return len(self._history)

    def append(self, message_id: int, message: BaseMessage, *, tokens: int | None = None) -> None:
        """Add the branch's next message (made after the last, so its id is greater);
        `tokens`: its `message_tokens`, if counted already."""
        if self.leaf_id is not None and message_id <= self.leaf_id:
            raise ValueError(f"message {message_id} is not after {self.leaf_id}")
        self.leaf_id = message_id
        if not message.text:
            return  # a reply interrupted before its first word: nothing to show the LLM
        if tokens is None:
            tokens = message_tokens(message)
        self._history.append((type(message), message.text, tokens))
        self._tokens += tokens
        # Forget what the LLM can no longer be shown, keeping memory bounded per agent.
        while len(self._history) > 1 and self._tokens - self._history[0][2] >= self.token_budget:
            *_, dropped = self._history.popleft()
            self._tokens -= dropped

    def extend(self, messages: Iterable[tuple[int, BaseMessage]]) -> None:
        for message_id, message in messages:
            self.append(message_id, message)

    def prompt(self, grounding: str | None = None) -> list[BaseMessage]:
        """System prompt (plus grounding) and the newest history that fits the token budget."""
        system = self.system_prompt
        if grounding:
            system += "\n\nKnowledge:\n" + grounding
        return [SystemMessage(content=system), *self._window()]

    def _window(self) -> list[BaseMessage]:
        """What `trim_messages(strategy="last", start_on="human")` keeps with this budget,
        from the counts kept with each message (its token counts add up per message) rather
        than counting the whole window again on every turn."""
        kept: list[tuple[type[BaseMessage], str, int]] = []
        total = 0
        for entry in reversed(self._history):
            total += entry[2]
            if total > self.token_budget:
                break
            kept.append(entry)
        while kept and kept[-1][0] is not HumanMessage:
            kept.pop()  # the oldest kept: the window starts on a question
        return [kind(content=text) for kind, text, _ in reversed(kept)]

    async def reply(
        self, llm: BaseChatModel, grounding: str | None = None, *, stream: bool = False
    ) -> AsyncGenerator[AIMessageChunk]:
        """The answer to the conversation so far: chunk by chunk, or in one chunk."""
        prompt = self.prompt(grounding)
        if stream:
            async for chunk in llm.astream(prompt):
                yield chunk
            return
        answer = await llm.ainvoke(prompt)
        yield AIMessageChunk(
            content=answer.content,
            usage_metadata=getattr(answer, "usage_metadata", None),
            response_metadata=answer.response_metadata,
        )


def system_prompt_for(base: str, context: dict[str, Any]) -> str:
    if not context:
        return base
    return base + "\n\nSession context (JSON): " + json.dumps(context, ensure_ascii=False)
