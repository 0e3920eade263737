"""The thinnest service that does what a turn must, to measure ours against.

Two inserts and an update with the raw async driver, and one HTTP call to the LLM carrying the
session's whole history, kept in a dict. No lock, no idempotency, no pool, no metrics.

    THIN_DATABASE_URL=mysql://root@127.0.0.1:3306/db THIN_LLM_URL=http://127.0.0.1:PORT/v1 \\
        uvicorn bench.thin_app:app --port 8001
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiomysql
import httpx
from fastapi import FastAPI

from bench.common import aiomysql_options

histories: dict[str, list[dict[str, str]]] = {}
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    state["db"] = await aiomysql.create_pool(
        **aiomysql_options(os.environ["THIN_DATABASE_URL"]), autocommit=True, maxsize=20
    )
    state["llm"] = httpx.AsyncClient(base_url=os.environ["THIN_LLM_URL"], timeout=30)
    yield
    state["db"].close()
    await state["db"].wait_closed()
    await state["llm"].aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/sessions")
async def create_session() -> dict[str, str]:
    session_id = uuid.uuid4().hex
    now = datetime.now(UTC).replace(tzinfo=None)
    async with state["db"].acquire() as connection, connection.cursor() as cursor:
        await cursor.execute(
            "INSERT INTO chat_sessions (session_id, user_id, title, context, message_count,"
            " created_at, updated_at) VALUES (%s, 'thin', 'thin', '{}', 0, %s, %s)",
            (session_id, now, now),
        )
    histories[session_id] = []
    return {"session_id": session_id}


@app.post("/sessions/{session_id}/messages")
async def turn(session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    history = histories[session_id]
    question = body["content"]
    async with state["db"].acquire() as connection, connection.cursor() as cursor:
        await cursor.execute(
            "INSERT INTO chat_messages (session_id, seq, role, content, timestamp, metadata)"
            " VALUES (%s, %s, 'user', %s, %s, '{}')",
            (session_id, len(history) + 1, question, datetime.now(UTC).replace(tzinfo=None)),
        )
    history.append({"role": "user", "content": question})
    response = await state["llm"].post(
        "/chat/completions", json={"model": "m", "messages": history}
    )
    answer = response.json()["choices"][0]["message"]["content"]
    history.append({"role": "assistant", "content": answer})
    now = datetime.now(UTC).replace(tzinfo=None)
    async with state["db"].acquire() as connection, connection.cursor() as cursor:
        await cursor.execute(
            "INSERT INTO chat_messages (session_id, seq, role, content, timestamp, metadata)"
            " VALUES (%s, %s, 'assistant', %s, %s, '{}')",
            (session_id, len(history), answer, now),
        )
        await cursor.execute(
            "UPDATE chat_sessions SET message_count = %s, updated_at = %s WHERE session_id = %s",
            (len(history), now, session_id),
        )
    return {"user": question, "assistant": answer}
