"""AGENT_GROUNDING=tools (api-v2 §5): the model calls RAGFlow as tools when it chooses, at most
AGENT_MAX_STEPS steps a turn; each step stored in metadata.steps and streamed as tool_start /
tool_end between the deltas; a failing tool is the model's to answer around."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.backup import export, restore
from session_service.config import Settings
from session_service.db.engine import create_engine, create_session_factory
from session_service.db.migrate import upgrade_to_head
from session_service.db.models import ChatMessage
from tests.conftest import serve_app
from tests.fakes.openai import NO_MORE_TOOLS, FakeLLM, ToolCall
from tests.fakes.ragflow import FakeRagflow
from tests.helpers import Headers, answered, eventually, new_session


def _after_tools(answer: str, *calls: ToolCall) -> Callable[[list[dict[str, Any]]], Any]:
    """The model: these calls for the question, then `answer` once a tool has answered."""
    return lambda messages: answer if messages[-1]["role"] == "tool" else list(calls)


def _tools(ragflow_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    values = {"agent_tool_timeout_seconds": 5, **overrides}  # under the tests' LLM timeout
    return ragflow_settings(agent_grounding="tools", ragflow_dataset_ids="ds-1", **values)


async def test_a_tool_call_is_a_step_stored_with_its_references(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    fake_llm.reply = _after_tools(
        "Paris.", ToolCall("search_knowledge_base", {"query": "capital of France"})
    )
    async with serve_app(_tools(ragflow_settings)) as client:
        session_id = await new_session(client, alice)
        turn = await answered(client, alice, session_id, "What is the capital of France?")
    reply = turn["assistant_message"]
    assert reply["content"] == "Paris."
    [retrieval] = fake_ragflow.calls("POST", "/retrieval")
    assert retrieval.json["question"] == "capital of France"
    assert fake_ragflow.calls("POST", "/completions") == []  # not asked before the LLM
    (step,) = reply["metadata"]["steps"]
    assert step["tool"] == "search_knowledge_base"
    assert step["input"] == {"query": "capital of France"}
    assert "Paris is the capital of France." in step["output"]
    assert [r["chunk_id"] for r in step["references"]] == ["chunk-paris"]
    assert step["duration_ms"] >= 0
    assert "error" not in step
    assert reply["metadata"]["references"] == step["references"]
    first, second = fake_llm.calls
    assert {t["function"]["name"] for t in first["tools"]} == {
        "search_knowledge_base",
        "ask_knowledge_base",
    }
    assert "runtime" not in str(first["tools"])  # the session is not the model's to see
    assert second["messages"][-1]["role"] == "tool"
    assert step["id"] == second["messages"][-1]["tool_call_id"]
    assert "Paris is the capital of France." in second["messages"][-1]["content"]


async def test_steps_stream_between_the_deltas(
    ragflow_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.reply = _after_tools(
        "It is Paris.",
        ToolCall("search_knowledge_base", {"query": "capital"}),
        ToolCall("ask_knowledge_base", {"question": "Which capital?"}),
    )
    async with serve_app(_tools(ragflow_settings)) as client:
        session_id = await new_session(client, alice)
        response = await client.post(
            f"/api/sessions/{session_id}/messages",
            json={"content": "capital?", "stream": True},
            headers=alice,
        )
    names = [
        line.removeprefix("event: ")
        for line in response.text.splitlines()
        if line.startswith("event: ")
    ]
    assert names[0] == "message_start"
    assert names[-1] == "message_end"
    tools = [name for name in names if name.startswith("tool_")]
    assert sorted(tools) == ["tool_end", "tool_end", "tool_start", "tool_start"]
    assert names.index("delta") > max(i for i, name in enumerate(names) if name == "tool_end")
    assert (
        '"tool": "ask_knowledge_base"' in response.text
        or '"tool":"ask_knowledge_base"' in response.text
    )


async def test_no_tool_call_and_the_step_limit(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    async with serve_app(_tools(ragflow_settings, agent_max_steps=2)) as client:
        session_id = await new_session(client, alice)
        direct = await answered(client, alice, session_id, "hello")  # the echo: no tools
        assert "steps" not in direct["assistant_message"]["metadata"]
        assert fake_ragflow.calls("POST", "/retrieval") == []
        fake_llm.reply = lambda _messages: [ToolCall("search_knowledge_base", {"query": "more"})]
        looping = await answered(client, alice, session_id, "dig")
    reply = looping["assistant_message"]
    assert reply["content"] == NO_MORE_TOOLS
    assert len(reply["metadata"]["steps"]) == 2
    assert fake_llm.calls[-1]["tool_choice"] == "none"
    assert "tool_choice" not in fake_llm.calls[-2]
    fake_llm.obey_tool_choice = False  # a server that calls tools all the same: the turn ends
    async with serve_app(_tools(ragflow_settings, agent_max_steps=1)) as client:
        calls_before = len(fake_llm.calls)
        stubborn = await answered(client, alice, session_id, "dig deeper")
    assert len(fake_llm.calls) - calls_before == 2
    assert stubborn["assistant_message"]["content"] == ""
    assert len(stubborn["assistant_message"]["metadata"]["steps"]) == 1


async def test_a_failing_tool_is_an_error_the_model_answers_around(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    fake_llm.reply = _after_tools(
        "Sorry, no sources.", ToolCall("search_knowledge_base", {"query": "x"})
    )
    async with serve_app(_tools(ragflow_settings, ragflow_timeout_seconds=1)) as client:
        session_id = await new_session(client, alice)
        fake_ragflow.fail = "502"
        turn = await answered(client, alice, session_id, "anything?")
    reply = turn["assistant_message"]
    assert reply["content"] == "Sorry, no sources."
    (step,) = reply["metadata"]["steps"]
    assert step["error"]
    assert fake_llm.calls[-1]["messages"][-1]["content"].startswith("Error: ")


async def test_a_failed_turn_keeps_the_steps_it_took(
    ragflow_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    """The LLM fails after a step, before a word: the reply stays, interrupted, with it."""
    fake_llm.reply = _after_tools("never sent", ToolCall("search_knowledge_base", {"query": "q"}))
    fake_llm.drop_after_chunks = 0  # the answer's stream breaks at once (the calls' does not)
    async with serve_app(_tools(ragflow_settings)) as client:
        session_id = await new_session(client, alice)
        failed = await client.post(
            f"/api/sessions/{session_id}/messages", json={"content": "q?"}, headers=alice
        )
        assert failed.status_code == 502, failed.text
        shown = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    reply = shown["messages"][-1]
    assert reply["role"] == "assistant"
    assert reply["content"] == ""
    assert reply["metadata"]["status"] == "interrupted"
    assert [step["tool"] for step in reply["metadata"]["steps"]] == ["search_knowledge_base"]
    assert reply["metadata"]["references"]


async def test_the_offline_model_looks_up_the_question_once(
    ragflow_settings: Callable[..., Settings], fake_ragflow: FakeRagflow, alice: Headers
) -> None:
    """The zero-config model, given tools: the first one, asked the question, then an answer
    quoting it; streamed and not alike."""
    async with serve_app(_tools(ragflow_settings, llm_provider="offline")) as client:
        session_id = await new_session(client, alice)
        plain = await answered(client, alice, session_id, "capital of France?")
        streamed = await client.post(
            f"/api/sessions/{session_id}/messages",
            json={"content": "capital of France?", "stream": True},
            headers=alice,
        )
        shown = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    reply = plain["assistant_message"]
    (step,) = reply["metadata"]["steps"]
    assert (step["tool"], step["input"]) == (
        "search_knowledge_base",
        {"query": "capital of France?"},
    )
    assert 'search_knowledge_base answered: "' in reply["content"]
    assert "Paris is the capital of France." in reply["content"]
    assert "event: tool_start" in streamed.text
    last = shown["messages"][-1]  # the streamed turn's reply
    assert "search_knowledge_base answered" in last["content"]
    assert len(last["metadata"]["steps"]) == 1
    assert len(fake_ragflow.calls("POST", "/retrieval")) == 2


async def _generating(client: AsyncClient, headers: Headers, session_id: str) -> int:
    """The id of the reply being generated, once there is one."""
    found: list[int] = []

    async def one() -> bool:
        detail = (await client.get(f"/api/sessions/{session_id}", headers=headers)).json()
        last = detail["messages"][-1] if detail["messages"] else {}
        if last.get("metadata", {}).get("status") == "streaming":
            found.append(last["id"])
        return bool(found)

    await eventually(one)
    return found[0]


async def test_a_stop_during_a_tool_call_ends_the_turn_at_once(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    fake_llm.reply = _after_tools("never", ToolCall("search_knowledge_base", {"query": "q"}))
    fake_ragflow.fail, fake_ragflow.slow_seconds = "slow", 3
    async with serve_app(_tools(ragflow_settings, ragflow_timeout_seconds=20)) as client:
        session_id = await new_session(client, alice)
        running = asyncio.create_task(
            client.post(
                f"/api/sessions/{session_id}/messages", json={"content": "q"}, headers=alice
            )
        )
        reply_id = await _generating(client, alice, session_id)
        await eventually(lambda: _async(bool(fake_ragflow.calls("POST", "/retrieval"))))
        started = time.perf_counter()
        stopped = await client.post(
            f"/api/sessions/{session_id}/messages/{reply_id}/stop", headers=alice
        )
        assert time.perf_counter() - started < 2  # not after the tool's 3 s
        turn = await running
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["metadata"]["status"] == "stopped"
    assert turn.json()["assistant_message"]["metadata"]["status"] == "stopped"
    assert "steps" not in stopped.json()["metadata"]  # the step never ended


async def _async(value: bool) -> bool:
    return value


async def test_regenerate_and_rejoin_an_agent_turn(
    ragflow_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    """A regenerated agent turn takes its own steps beside the first answer's; a client that
    rejoins a streamed one gets its step events again."""
    fake_llm.reply = _after_tools("Paris.", ToolCall("search_knowledge_base", {"query": "a"}))
    async with serve_app(_tools(ragflow_settings)) as client:
        session_id = await new_session(client, alice)
        first = (await answered(client, alice, session_id, "capital?"))["assistant_message"]
        fake_llm.reply = _after_tools(
            "Still Paris.", ToolCall("search_knowledge_base", {"query": "b"})
        )
        fake_llm.chunk_delay = 0.05
        base = f"/api/sessions/{session_id}/messages/{first['id']}"
        regenerating = asyncio.create_task(
            client.post(f"{base}/regenerate", json={"stream": True}, headers=alice)
        )
        reply_id = await _generating(client, alice, session_id)
        rejoined = await client.get(
            f"/api/sessions/{session_id}/messages/{reply_id}/stream", headers=alice
        )
        regenerated = await regenerating
    assert "event: tool_start" in rejoined.text
    assert "event: tool_end" in rejoined.text
    assert "event: message_end" in rejoined.text
    assert regenerated.status_code == 201
    detail = (await _detail(ragflow_settings, alice, session_id))["messages"][-1]
    assert detail["content"] == "Still Paris."
    assert [s["input"] for s in detail["metadata"]["steps"]] == [{"query": "b"}]
    assert detail["sibling_ids"] == [first["id"], reply_id]
    assert [s["input"] for s in first["metadata"]["steps"]] == [{"query": "a"}]


async def _detail(settings: Callable[..., Settings], headers: Headers, session_id: str) -> Any:
    async with serve_app(_tools(settings)) as client:
        return (await client.get(f"/api/sessions/{session_id}", headers=headers)).json()


async def test_two_replicas_and_the_history_later_turns_send(
    ragflow_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    """A turn on one replica calls two tools in one step; the next, on another replica, sends
    the texts of the conversation so far, not the steps."""
    fake_llm.reply = _after_tools(
        "Paris.",
        ToolCall("search_knowledge_base", {"query": "capital"}),
        ToolCall("ask_knowledge_base", {"question": "capital?"}),
    )
    settings = _tools(ragflow_settings, agent_max_steps=1)
    async with serve_app(settings) as one, serve_app(settings) as two:
        session_id = await new_session(one, alice)
        first = (await answered(one, alice, session_id, "capital?"))["assistant_message"]
        fake_llm.reply = lambda _messages: "Lyon is second."
        await answered(two, alice, session_id, "and the next city?")
    assert len(first["metadata"]["steps"]) == 2  # two calls in one step: within one step
    sent = fake_llm.calls[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "capital?"),
        ("assistant", "Paris."),
        ("user", "and the next city?"),
    ]


async def test_steps_are_exported_and_imported(
    ragflow_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    fake_llm.reply = _after_tools("Paris.", ToolCall("search_knowledge_base", {"query": "q"}))
    async with serve_app(_tools(ragflow_settings)) as client:
        session_id = await new_session(client, alice)
        reply = (await answered(client, alice, session_id, "capital?"))["assistant_message"]
    backup = tmp_path / "backup.jsonl"
    with backup.open("w", encoding="utf-8") as out:
        await export(db, out, session_id=session_id)
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"))
    try:
        await upgrade_to_head(engine)
        copy = create_session_factory(engine)
        await restore(copy, backup)
        async with copy() as session:
            restored = await session.get(ChatMessage, reply["id"])
    finally:
        await engine.dispose()
    assert restored is not None
    assert restored.meta["steps"] == reply["metadata"]["steps"]
    assert restored.meta["references"] == reply["metadata"]["references"]
