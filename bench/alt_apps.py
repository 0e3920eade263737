"""What users would pick instead, written the way each library's docs show, for bench.turns:

- `history_app`: history kept by langchain-community's `SQLChatMessageHistory` (async mode),
- `langgraph_app`: a LangGraph `StateGraph(MessagesState)` with its MySQL checkpointer
  (`langgraph-checkpoint-mysql`'s `AIOMySQLSaver`).

Both call the same fake LLM through `ChatOpenAI` and use the same database as the service.

    ALT_DATABASE_URL=mysql://root@127.0.0.1:3306/db ALT_LLM_URL=http://127.0.0.1:PORT/v1 \\
        uvicorn bench.alt_apps:history_app --port 8002     (or bench.alt_apps:langgraph_app)
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.mysql.aio import AIOMySQLSaver
from langgraph.graph import START, MessagesState, StateGraph
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import SQLChatMessageHistory


def _llm() -> ChatOpenAI:
    return ChatOpenAI(model="m", base_url=os.environ["ALT_LLM_URL"], api_key="k", max_retries=0)


def _url() -> Any:
    return make_url(os.environ["ALT_DATABASE_URL"])


# --- SQLChatMessageHistory ---------------------------------------------------------------
history_state: dict[str, Any] = {}


@asynccontextmanager
async def _history_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    history_state["engine"] = create_async_engine(_url().set(drivername="mysql+aiomysql"))
    history_state["llm"] = _llm()
    # The history creates its table on first use; concurrent first turns would race to create
    # it (one fails with "table exists"): create it once, before serving.
    await SQLChatMessageHistory(
        session_id="setup", connection=history_state["engine"], async_mode=True
    ).aget_messages()
    yield
    await history_state["engine"].dispose()


history_app = FastAPI(lifespan=_history_lifespan)


@history_app.post("/sessions")
async def history_session() -> dict[str, str]:
    return {"session_id": uuid.uuid4().hex}


@history_app.post("/sessions/{session_id}/messages")
async def history_turn(session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    history = SQLChatMessageHistory(
        session_id=session_id, connection=history_state["engine"], async_mode=True
    )
    question = HumanMessage(content=body["content"])
    await history.aadd_messages([question])
    answer = await history_state["llm"].ainvoke(await history.aget_messages())
    await history.aadd_messages([answer])
    return {"user": question.content, "assistant": answer.content}


# --- LangGraph with the MySQL checkpointer ---------------------------------------------------
graph_state: dict[str, Any] = {}


@asynccontextmanager
async def _graph_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    url = _url().set(drivername="mysql")
    llm = _llm()

    async def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": await llm.ainvoke(state["messages"])}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_edge(START, "model")
    async with AIOMySQLSaver.from_conn_string(
        url.render_as_string(hide_password=False)
    ) as checkpointer:
        await checkpointer.setup()
        graph_state["graph"] = builder.compile(checkpointer=checkpointer)
        yield


langgraph_app = FastAPI(lifespan=_graph_lifespan)


@langgraph_app.post("/sessions")
async def graph_session() -> dict[str, str]:
    return {"session_id": uuid.uuid4().hex}


@langgraph_app.post("/sessions/{session_id}/messages")
async def graph_turn(session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    result = await graph_state["graph"].ainvoke(
        {"messages": [HumanMessage(content=body["content"])]},
        {"configurable": {"thread_id": session_id}},
    )
    return {"user": body["content"], "assistant": result["messages"][-1].content}
