"""A reply being generated: owned by the service, not by the request that asked for it.

It runs to the end whoever listens; its events are kept so that a client that reloaded its
page can follow it again from any event id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from session_service.chat.public import MessagePublic
from session_service.errors import ServiceError
from session_service.llm.deadline import Stopper

MESSAGE_START = "message_start"
DELTA = "delta"
MESSAGE_END = "message_end"
TITLE = "title"  # the session's automatic title, when it is ready before message_end
TOOL_START = "tool_start"  # a step of the tool-using agent (AGENT_GROUNDING=tools) begins
TOOL_END = "tool_end"
ERROR = "error"


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a reply; its data is what a client is sent (messages as MessagePublic)."""

    id: int
    name: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TurnResult:
    user_message: MessagePublic
    assistant_message: MessagePublic
    created: bool  # False: a repeated client_message_id answered from the database


class Generation:
    def __init__(self, session_id: str, assistant_id: int, *, flush: float = 0.0) -> None:
        self.session_id = session_id
        self.assistant_id = assistant_id
        self.flush = flush  # seconds a delta waits for the next ones to join it
        self.stopper = Stopper()  # a user's stop ends its LLM stream
        self.events: list[Event] = []
        self.result: TurnResult | None = None
        self.error: ServiceError | None = None
        self.done = asyncio.Event()
        self._news = asyncio.Event()

    def publish(self, name: str, data: dict[str, Any]) -> None:
        self.events.append(Event(len(self.events) + 1, name, data))
        news, self._news = self._news, asyncio.Event()
        news.set()

    def succeed(self, result: TurnResult, end: dict[str, Any]) -> None:
        self.result = result
        self.publish(MESSAGE_END, end)

    def fail(self, error: ServiceError) -> None:
        self.error = error
        self.publish(
            ERROR, {"detail": error.detail, "code": error.code, "status": error.status_code}
        )

    def finish(self) -> None:
        """The turn is over and its lock released: listeners may go."""
        self.done.set()
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def follow(self, after: int = 0) -> AsyncIterator[Event]:
        """Every event after the one with id `after`, as they come, until the last.

        Deltas that are waiting together go as one (the text of each, with the id of the
        last): a follower that fell behind catches up in one event rather than many. With
        `flush` (STREAM_FLUSH_MS), a delta waits that long for the next ones to join it.
        """
        index = max(after, 0)
        while True:
            waiting = self.events[index : index + 1]
            if self.flush and waiting and waiting[0].name == DELTA and not self.done.is_set():
                await asyncio.sleep(self.flush)
            while index < len(self.events):
                event, index = self._joined(index)
                yield event
            if self.done.is_set():
                return
            await self._news.wait()

    def _joined(self, index: int) -> tuple[Event, int]:
        """The event at `index`, or the deltas from there on as one; and the index after."""
        end = index + 1
        if self.events[index].name == DELTA:
            while end < len(self.events) and self.events[end].name == DELTA:
                end += 1
        if end - index == 1:
            return self.events[index], end
        text = "".join(event.data["text"] for event in self.events[index:end])
        return Event(self.events[end - 1].id, DELTA, {"text": text}), end

    async def wait(self) -> TurnResult:
        """The stored pair once the reply is stored; the turn's error if it failed."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
