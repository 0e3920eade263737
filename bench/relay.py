"""The thinnest relay, the floor of bench/streams.py: a raw ASGI app that forwards the LLM's
stream to its client as SSE `delta` events, with httpx, and nothing else (no database, no
session, no middleware).

    THIN_LLM_URL=http://127.0.0.1:PORT/v1 uvicorn bench.relay:app --port 8002

`POST /` with `{"content": ...}` answers 201 and `delta` `{text}` events, then `message_end`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

Scope = dict[str, Any]
_client: list[httpx.AsyncClient] = []  # made in the lifespan, on the server's loop


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] != "POST":  # the readiness probe
            await _answer(send, 200, b"text/plain", b"ok", more=False)
            return
        await _answer(send, 201, b"text/event-stream", b"", more=True)
        await _relay(json.loads(body)["content"], send)
        await send(
            {"type": "http.response.body", "body": _event("message_end", {}), "more_body": False}
        )


async def _relay(content: str, send: Any) -> None:
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": content}]}
    async with _client[0].stream("POST", "/chat/completions", json=request) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:])["choices"]:
                text = choice["delta"].get("content")
                if text:
                    event = _event("delta", {"text": text})
                    await send({"type": "http.response.body", "body": event, "more_body": True})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            _client.append(
                httpx.AsyncClient(base_url=os.environ["THIN_LLM_URL"], limits=limits, timeout=120)
            )
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _client.pop().aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Any, status: int, content_type: bytes, body: bytes, *, more: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": more})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode()
