"""Reading Server-Sent Events in tests, and a real uvicorn server to read them from."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from session_service.config import Settings
from session_service.main import create_app


@dataclass
class SseEvent:
    name: str
    id: str | None
    data: Any
    comments: list[str] = field(default_factory=list)


async def read_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse the stream as it arrives; comment lines ride along on the next event."""
    name, event_id, data, comments = "message", None, [], []
    async for line in response.aiter_lines():
        if line == "":
            if data:  # a comment's own blank line does not end an event
                yield SseEvent(name, event_id, json.loads("\n".join(data)), comments)
                name, event_id, data, comments = "message", None, [], []
        elif line.startswith(":"):
            comments.append(line)
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "id":
                event_id = value
            elif key == "data":
                data.append(value)


@asynccontextmanager
async def uvicorn_server(settings: Settings) -> AsyncIterator[str]:
    """The app behind a real uvicorn on a free loopback port, in this event loop."""
    async with served(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


@asynccontextmanager
async def served(app: Any, port: int = 0) -> AsyncIterator[int]:
    """An ASGI app behind a real uvicorn on a loopback port (a free one by default), in this
    event loop, with its lifespan: the port, until the block ends."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task
