"""A tiny HTTP/1.1 server on a loopback port, in its own thread and event loop.

Fakes of the services we call (the LLM, RAGFlow) are built on it so that the production
clients (langchain-openai, httpx) talk real HTTP to them, and so a fake can also do what a
framework would not let it: drop the connection mid-answer, or answer slowly.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    payload: Any = None
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps(self.payload).encode()


@dataclass
class Stream:
    """A chunked response; the iterator may raise `DropConnection` to cut it short."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/event-stream"


class DropConnection(Exception):
    """Close the connection without (finishing) an answer."""


Handler = Callable[[Request], Awaitable[Reply | Stream]]


@dataclass
class FakeServer:
    handler: Handler
    requests: list[Request] = field(default_factory=list)
    # streamed answers whose client closed the connection before their end
    cut_short: list[Request] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake server did not start")
        return self

    def stop(self) -> None:
        assert self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        # A deep backlog: benchmarks open a thousand streams at once.
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # stopped: end quietly (asyncio would log a cancelled connection task)
        finally:
            self._connections.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, headers, body)
                self.requests.append(request)
                try:
                    answer = await self.handler(request)
                    if isinstance(answer, Reply):
                        await _write_reply(writer, answer)
                    else:
                        try:
                            await _write_stream(writer, answer)
                        except ConnectionError:
                            self.cut_short.append(request)
                            raise
                except DropConnection:
                    writer.transport.abort()
                    return
        except ConnectionError:
            return
        finally:
            writer.close()


async def _write_reply(writer: asyncio.StreamWriter, reply: Reply) -> None:
    body = reply.encoded()
    writer.write(_head(reply.status, reply.content_type, f"Content-Length: {len(body)}") + body)
    await writer.drain()


async def _write_stream(writer: asyncio.StreamWriter, stream: Stream) -> None:
    writer.write(_head(stream.status, stream.content_type, "Transfer-Encoding: chunked"))
    await writer.drain()
    async for chunk in stream.chunks:
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _head(status: int, content_type: str, length_header: str) -> bytes:
    reason = HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{length_header}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
