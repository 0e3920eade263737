"""RAGFlow: the mirror, grounding in both modes, every failure, deferred deletes, recovery.

The fake RAGFlow records every request, so these tests assert the exact calls made."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from session_service.db.models import ChatSession, RagflowDeletion
from session_service.ragflow.client import RagflowClient, new_http_client
from session_service.ragflow.errors import RagflowAuthError, RagflowNotFound, RagflowUnavailable
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.fakes.ragflow import API_KEY, CHAT_ID, FakeRagflow
from tests.helpers import Headers, answered, created_session, eventually, stored, turn


def assert_every_call_authorised_and_safe(fake: FakeRagflow) -> None:
    for request in fake.server.requests:
        assert request.headers.get("authorization") == f"Bearer {API_KEY}"
        if request.method == "DELETE":
            assert request.json["ids"], "a delete without ids wipes the whole chat"
        if request.path.endswith("/completions"):
            assert request.json["session_id"]
            assert request.json["stream"] is False
    assert not fake.wiped


def _is_gone(
    fake: FakeRagflow, mirror_id: str, db: async_sessionmaker[AsyncSession]
) -> Callable[[], Awaitable[bool]]:
    """Deleted in RAGFlow, and no longer pending here."""

    async def gone() -> bool:
        return mirror_id not in fake.sessions and await pending_deletions(db) == 0

    return gone


async def pending_deletions(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(RagflowDeletion)) or 0)


async def test_session_gets_one_mirror_named_after_it(
    ragflow_settings: Callable[..., Settings], fake_ragflow: FakeRagflow, alice: Headers
) -> None:
    async with serve_app(ragflow_settings()) as client:
        created = await created_session(
            client, alice, title="Trip to Paris 🗼", session_id="trip-1"
        )
        again = await client.post("/api/sessions", json={"session_id": "trip-1"}, headers=alice)
        assert again.status_code == 200
    mirror_id = created["ragflow_session_id"]
    assert mirror_id in fake_ragflow.sessions
    assert fake_ragflow.sessions[mirror_id]["name"] == "Trip to Paris 🗼"
    assert len(fake_ragflow.calls("POST", "/sessions")) == 1
    assert_every_call_authorised_and_safe(fake_ragflow)


async def test_chat_mode_grounds_the_answer_with_references(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    async with serve_app(ragflow_settings()) as client:
        created = await created_session(client, alice)
        answer = await answered(
            client, alice, created["session_id"], "What is the capital of France?"
        )
    [completion] = fake_ragflow.calls("POST", "/completions")
    assert completion.json["session_id"] == created["ragflow_session_id"]
    assert completion.json["question"] == "What is the capital of France?"
    assert completion.path == "/api/v1/chat/completions"  # v0.27: the current route
    assert completion.json["chat_id"] == CHAT_ID
    system = fake_llm.calls[-1]["messages"][0]["content"]
    assert "Paris, according to the documents [ID:0]" in system
    # the sources numbered as RAGFlow's citations count them: [ID:0] is the first chunk
    assert "[ID:0] geography.pdf: Paris is the capital of France." in system
    assert "[ID:1] rivers.md" in system
    meta = answer["assistant_message"]["metadata"]
    assert meta["grounding"] == "ragflow_chat"
    assert meta["references"] == [
        {
            "document_name": "geography.pdf",
            "document_id": "doc-geo",
            "chunk_id": "chunk-paris",
            "dataset_id": "ds-1",
            "similarity": 0.91,
            "cited": True,
        },
        {
            "document_name": "rivers.md",
            "document_id": "doc-rivers",
            "chunk_id": "chunk-seine",
            "dataset_id": "ds-2",
            "similarity": 0.74,
            "cited": False,  # retrieved, not cited: RAGFlow lists every retrieved chunk
        },
    ]
    assert fake_ragflow.calls("POST", "/retrieval") == []
    assert_every_call_authorised_and_safe(fake_ragflow)


async def test_retrieval_mode_grounds_with_the_configured_datasets(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    async with serve_app(ragflow_settings(ragflow_dataset_ids="ds-1")) as client:
        created = await created_session(client, alice)
        answer = await answered(client, alice, created["session_id"], "capital?")
    [retrieval] = fake_ragflow.calls("POST", "/retrieval")
    assert retrieval.json["question"] == "capital?"
    assert retrieval.json["dataset_ids"] == ["ds-1"]
    assert fake_ragflow.calls("POST", "/completions") == []
    assert "Paris is the capital of France." in fake_llm.calls[-1]["messages"][0]["content"]
    meta = answer["assistant_message"]["metadata"]
    assert meta["grounding"] == "retrieval"
    assert [r["chunk_id"] for r in meta["references"]] == ["chunk-paris"]
    assert meta["references"][0]["document_name"] == "geography.pdf"


async def test_delete_deletes_the_mirror_by_id(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with serve_app(ragflow_settings()) as client:
        keep = await created_session(client, alice)
        gone = await created_session(client, alice)
        assert (
            await client.delete(f"/api/sessions/{gone['session_id']}", headers=alice)
        ).status_code == 204
        await eventually(_is_gone(fake_ragflow, gone["ragflow_session_id"], db))
    [deletion] = fake_ragflow.calls("DELETE")
    assert deletion.json == {"ids": [gone["ragflow_session_id"]]}
    assert gone["ragflow_session_id"] not in fake_ragflow.sessions
    assert keep["ragflow_session_id"] in fake_ragflow.sessions
    assert await pending_deletions(db) == 0
    assert_every_call_authorised_and_safe(fake_ragflow)


async def test_delete_during_an_outage_is_finished_when_ragflow_returns(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with serve_app(ragflow_settings()) as client:
        created = await created_session(client, alice)
        fake_ragflow.fail = "500"
        response = await client.delete(f"/api/sessions/{created['session_id']}", headers=alice)
        assert response.status_code == 204
        assert (
            await client.get(f"/api/sessions/{created['session_id']}", headers=alice)
        ).status_code == 404
        await asyncio.sleep(0.5)
        assert await pending_deletions(db) == 1
        assert created["ragflow_session_id"] in fake_ragflow.sessions
        fake_ragflow.fail = None
        await eventually(_is_gone(fake_ragflow, created["ragflow_session_id"], db))
    assert created["ragflow_session_id"] not in fake_ragflow.sessions
    assert await pending_deletions(db) == 0
    assert_every_call_authorised_and_safe(fake_ragflow)


async def test_session_created_while_ragflow_is_down_gets_its_mirror_at_the_first_turn(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with serve_app(ragflow_settings()) as client:
        fake_ragflow.fail = "drop"
        created = await created_session(client, alice)
        assert created["ragflow_session_id"] is None
        fake_ragflow.fail = None
        answers = await asyncio.gather(
            *(turn(client, alice, created["session_id"], f"q{i}") for i in range(4))
        )
        assert [a.status_code for a in answers] == [201] * 4
        read = (await client.get(f"/api/sessions/{created['session_id']}", headers=alice)).json()
    assert [a.json()["assistant_message"]["metadata"]["grounding"] for a in answers] == [
        "ragflow_chat"
    ] * 4
    creations = [r for r in fake_ragflow.calls("POST", "/sessions") if r.json]
    assert len(fake_ragflow.sessions) == 1  # one mirror, also under concurrent first turns
    assert read["ragflow_session_id"] in fake_ragflow.sessions
    assert len(creations) == 2  # the dropped attempt at creation, then exactly one more
    async with db() as session:
        row = await session.get(ChatSession, created["session_id"])
    assert row is not None
    assert row.ragflow_session_id == read["ragflow_session_id"]


@pytest.mark.parametrize("failure", ["500", "code100", "drop", "slow"])
async def test_a_failing_ragflow_leaves_the_turn_answered_from_the_llm_alone(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    failure: str,
) -> None:
    fake_ragflow.slow_seconds = 2
    async with serve_app(ragflow_settings(ragflow_timeout_seconds=0.5)) as client:
        created = await created_session(client, alice)
        fake_ragflow.fail = failure
        answer = await answered(client, alice, created["session_id"], "still there?")
        assert answer["assistant_message"]["metadata"]["grounding"] == "unavailable"
        assert answer["assistant_message"]["content"] == "echo: still there?"
        assert "Knowledge" not in fake_llm.calls[-1]["messages"][0]["content"]
        fake_ragflow.fail = None
        recovered = await answered(client, alice, created["session_id"], "and now?")
        assert recovered["assistant_message"]["metadata"]["grounding"] == "ragflow_chat"
    assert [r[1:] for r in await stored(db, created["session_id"])] == [
        ("user", "still there?"),
        ("assistant", "echo: still there?"),
        ("user", "and now?"),
        ("assistant", "echo: and now?"),
    ]


async def test_a_mirror_deleted_on_ragflows_side_is_made_again(
    ragflow_settings: Callable[..., Settings], fake_ragflow: FakeRagflow, alice: Headers
) -> None:
    async with serve_app(ragflow_settings()) as client:
        created = await created_session(client, alice)
        fake_ragflow.sessions.clear()
        answer = await answered(client, alice, created["session_id"], "hello?")
        read = (await client.get(f"/api/sessions/{created['session_id']}", headers=alice)).json()
    assert answer["assistant_message"]["metadata"]["grounding"] == "ragflow_chat"
    assert read["ragflow_session_id"] != created["ragflow_session_id"]
    assert read["ragflow_session_id"] in fake_ragflow.sessions


async def test_ragflow_off_makes_no_calls(
    llm_settings: Callable[..., Settings], fake_ragflow: FakeRagflow, alice: Headers
) -> None:
    async with serve_app(llm_settings()) as client:
        created = await created_session(client, alice)
        answer = await answered(client, alice, created["session_id"], "hi")
    assert created["ragflow_session_id"] is None
    assert "grounding" not in answer["assistant_message"]["metadata"]
    assert fake_ragflow.server.requests == []


# --- the client on its own ---------------------------------------------------------------


@pytest.fixture
async def ragflow_client(fake_ragflow: FakeRagflow) -> Any:
    async with new_http_client(fake_ragflow.url, API_KEY, 2) as http:
        yield RagflowClient(http, CHAT_ID, ["ds-1", "ds-2"])


@pytest.mark.parametrize("style", ["401", "109"])
async def test_a_bad_key_is_an_auth_error(fake_ragflow: FakeRagflow, style: str) -> None:
    fake_ragflow.auth_style = style
    async with new_http_client(fake_ragflow.url, "ragflow-wrong", 2) as http:
        with pytest.raises(RagflowAuthError):
            await RagflowClient(http, CHAT_ID, []).create_session("x", "u")


async def test_unknown_session_is_not_found(ragflow_client: RagflowClient) -> None:
    with pytest.raises(RagflowNotFound):
        await ragflow_client.ask("0" * 32, "hello", "u")


async def test_proxy_errors_are_retried_and_server_errors_are_not(
    ragflow_client: RagflowClient, fake_ragflow: FakeRagflow
) -> None:
    fake_ragflow.fail_next, fake_ragflow.fail_next_mode = 2, "502"
    assert (await ragflow_client.retrieve("retried")).references
    assert len(fake_ragflow.server.requests) == 3
    fake_ragflow.fail_next, fake_ragflow.fail_next_mode = 1, "500"
    with pytest.raises(RagflowUnavailable):
        await ragflow_client.retrieve("not retried")
    assert len(fake_ragflow.server.requests) == 4


async def test_retries_stop(ragflow_client: RagflowClient, fake_ragflow: FakeRagflow) -> None:
    fake_ragflow.fail = "503"
    with pytest.raises(RagflowUnavailable):
        await ragflow_client.retrieve("q")
    assert len(fake_ragflow.server.requests) == 3


@pytest.mark.parametrize("style", ["delta", "cumulative"])
async def test_a_streamed_answer_is_folded(
    ragflow_client: RagflowClient, fake_ragflow: FakeRagflow, style: str
) -> None:
    fake_ragflow.ignore_stream_flag = True
    fake_ragflow.stream_style = style
    mirror = await ragflow_client.create_session("s", "u")
    grounding = await ragflow_client.ask(mirror, "capital?", "u")
    assert grounding.text.startswith(
        "The knowledge base's answer: Paris, according to the documents [ID:0]. You asked: capital?"
    )
    assert [r.chunk_id for r in grounding.references] == ["chunk-paris", "chunk-seine"]


async def test_deleting_an_unknown_mirror_counts_as_deleted(
    ragflow_client: RagflowClient, fake_ragflow: FakeRagflow
) -> None:
    await ragflow_client.delete_session("f" * 32, CHAT_ID)
    mirror = await ragflow_client.create_session("s", "u")
    await ragflow_client.delete_session(mirror, CHAT_ID)
    assert mirror not in fake_ragflow.sessions
    with pytest.raises(ValueError, match="refusing"):
        await ragflow_client.delete_session("", CHAT_ID)
    assert all(r.json["ids"] for r in fake_ragflow.calls("DELETE"))


async def test_connection_refused_is_unavailable() -> None:
    async with new_http_client("http://127.0.0.1:9", API_KEY, 1) as http:
        with pytest.raises(RagflowUnavailable):
            await RagflowClient(http, CHAT_ID, []).create_session("x", "u")
    assert isinstance(httpx.ConnectError("x"), httpx.TransportError)


async def test_with_grounding_off_ragflow_is_never_asked(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    fake_llm: FakeLLM,
    alice: Headers,
) -> None:
    """AGENT_GROUNDING=off: the LLM alone answers; the session is still mirrored."""
    async with serve_app(ragflow_settings(agent_grounding="off")) as client:
        created = await created_session(client, alice)
        answer = await answered(client, alice, created["session_id"], "What is the capital?")
    assert created["ragflow_session_id"] in fake_ragflow.sessions
    assert fake_ragflow.calls("POST", "/completions") == []
    assert fake_ragflow.calls("POST", "/retrieval") == []
    assert "grounding" not in answer["assistant_message"]["metadata"]
    assert "Knowledge:" not in fake_llm.calls[-1]["messages"][0]["content"]
