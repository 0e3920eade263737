"""The light client of bench/streams.py: streamed turns over plain asyncio sockets.

HTTP/1.1 by hand (a request, the response's head, its chunked body) and SSE by hand, so that
a thousand streams cost the client little and every event's arrival is timed as it is read.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stream:
    """One streamed turn as its client saw it."""

    status: int = 0
    started: float = 0.0
    deltas: list[float] = field(default_factory=list)  # arrival of each `delta` event
    message_id: int | None = None  # message_start's assistant_message_id
    ended: bool = False  # message_end came
    error: str | None = None  # an `error` event, or what broke the connection

    @property
    def accepted(self) -> bool:
        return self.status in (200, 201)

    @property
    def first_delta(self) -> float | None:
        return self.deltas[0] - self.started if self.deltas else None

    def added_delays(self, pace: float) -> list[float]:
        """How much later than the LLM's pace each delta after the first came."""
        return [max(0.0, b - a - pace) for a, b in zip(self.deltas, self.deltas[1:], strict=False)]


async def stream_turn(host: str, port: int, path: str, payload: dict[str, Any]) -> Stream:
    seen = Stream(started=time.perf_counter())
    body = json.dumps(payload).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        seen.error = repr(exc)
        return seen
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        seen.status = int(head.split(b" ", 2)[1])
        if seen.accepted:
            await _read_events(reader, seen)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        seen.error = seen.error or repr(exc)
    finally:
        writer.close()
    return seen


async def _read_events(reader: asyncio.StreamReader, seen: Stream) -> None:
    pending = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            return
        pending += (await reader.readexactly(size + 2))[:-2]
        arrived = time.perf_counter()
        *events, pending = pending.split(b"\r\n\r\n")
        for event in events:
            _take(event, seen, arrived)


def _take(event: bytes, seen: Stream, arrived: float) -> None:
    name, data = "message", b""
    for line in event.split(b"\r\n"):
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    if name == "delta":
        seen.deltas.append(arrived)
    elif name == "message_start":
        seen.message_id = json.loads(data)["assistant_message_id"]
    elif name == "message_end":
        seen.ended = True
    elif name == "error":
        seen.error = data.decode()


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]
