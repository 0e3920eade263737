"""Streamed replies over a real uvicorn server, so that hanging up is a real disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.api import turns as turn_routes
from session_service.chat.generation import DELTA, MESSAGE_END, MESSAGE_START, Generation
from session_service.config import Settings
from session_service.db.models import ChatMessage, ChatSession
from session_service.db.types import utcnow
from tests.fakes.openai import FakeLLM
from tests.helpers import Headers, conversation, eventually, new_session, stored
from tests.sse import SseEvent, read_events, uvicorn_server


@pytest.fixture
async def base(llm_settings: Callable[..., Settings]) -> AsyncIterator[str]:
    async with uvicorn_server(llm_settings()) as url:
        yield url


@pytest.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


async def stream_turn(
    http: httpx.AsyncClient, headers: Headers, session_id: str, content: str, **extra: Any
) -> list[SseEvent]:
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": content, "stream": True, **extra},
        headers=headers,
    ) as response:
        assert response.status_code in (200, 201), await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [event async for event in read_events(response)]


async def test_events_in_order_with_the_rows_stored_when_they_arrive(
    http: httpx.AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.reply = lambda _messages: "one two three four five"
    fake_llm.chunk_delay = 0.02
    session_id = await new_session(http, alice)
    seen_at_start: list[Any] = []
    seen_at_end: list[Any] = []
    events = []
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": "count to five", "stream": True},
        headers=alice,
    ) as response:
        assert response.status_code == 201
        async for event in read_events(response):
            events.append(event)
            if event.name == "message_start":
                seen_at_start = await stored(db, session_id)
            if event.name == "message_end":
                seen_at_end = await stored(db, session_id)
    names = [event.name for event in events]
    assert names[0] == "message_start"
    assert names[-1] == "message_end"
    assert set(names[1:-1]) == {"delta"}
    assert len(names) == 2 + 5
    assert [event.id for event in events] == [str(i) for i in range(1, len(events) + 1)]
    start, end = events[0].data, events[-1].data
    assert start["user_message"]["content"] == "count to five"
    assert (1, "user", "count to five") in seen_at_start
    reply = end["assistant_message"]
    text = "".join(event.data["text"] for event in events[1:-1])
    assert text == reply["content"] == "one two three four five"
    assert reply["id"] == start["assistant_message_id"]
    assert reply["metadata"]["model"] == "fake-model"
    assert reply["metadata"]["usage"]["output_tokens"] == 5
    assert "status" not in reply["metadata"]
    assert seen_at_end == [(1, "user", "count to five"), (2, "assistant", text)]
    assert fake_llm.calls[-1]["stream"] is True


async def test_accept_header_asks_for_a_stream(
    http: httpx.AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    session_id = await new_session(http, alice)
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": "hi"},
        headers={**alice, "Accept": "text/event-stream"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        names = [event.name async for event in read_events(response)]
    assert names[0] == "message_start"
    assert names[-1] == "message_end"


async def test_offline_model_streams_word_by_word(
    make_settings: Callable[..., Settings], alice: Headers
) -> None:
    async with uvicorn_server(make_settings()) as url, httpx.AsyncClient(base_url=url) as http:
        session_id = await new_session(http, alice)
        events = await stream_turn(http, alice, session_id, "How are you today?")
    deltas = [e.data["text"] for e in events if e.name == "delta"]
    assert len(deltas) > 10
    assert "".join(deltas) == events[-1].data["assistant_message"]["content"]
    assert "offline" in "".join(deltas)


async def test_client_hanging_up_loses_nothing(
    http: httpx.AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.reply = lambda _m: " ".join(f"w{i}" for i in range(20))
    fake_llm.chunk_delay = 0.05
    session_id = await new_session(http, alice)
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": "long answer please", "stream": True},
        headers=alice,
    ) as response:
        async for event in read_events(response):
            if event.name == "delta":
                break  # hang up after the first delta

    async def stored_whole() -> bool:
        rows = await stored(db, session_id)
        return len(rows) == 2 and rows[1][2] == fake_llm.reply([])

    await eventually(stored_whole)
    assert await stored(db, session_id) == [
        (1, "user", "long answer please"),
        (2, "assistant", fake_llm.reply([])),
    ]
    async with db() as session:
        reply = await session.get(ChatMessage, await _message_id(db, session_id, 2))
        row = await session.get(ChatSession, session_id)
    assert reply is not None
    assert "status" not in reply.meta
    assert row is not None
    assert row.generating_message_id is None
    fake_llm.chunk_delay = 0
    await stream_turn(http, alice, session_id, "next")
    history = conversation(fake_llm.calls[-1])
    assert history == [
        ("user", "long answer please"),
        ("assistant", fake_llm.reply([])),
        ("user", "next"),
    ]


async def test_llm_failing_mid_stream_keeps_what_was_generated(
    http: httpx.AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.reply = lambda _m: "alpha beta gamma delta epsilon"
    fake_llm.drop_after_chunks = 3
    session_id = await new_session(http, alice)
    events = await stream_turn(http, alice, session_id, "go")
    names = [event.name for event in events]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_end" not in names
    assert events[-1].data["detail"]
    partial = "".join(e.data["text"] for e in events if e.name == "delta")
    assert partial == "alpha beta gamma "
    rows = await stored(db, session_id)
    assert rows == [(1, "user", "go"), (2, "assistant", partial)]
    async with db() as session:
        reply = await session.get(ChatMessage, await _message_id(db, session_id, 2))
    assert reply is not None
    assert reply.meta["status"] == "interrupted"
    fake_llm.drop_after_chunks = None
    after = await stream_turn(http, alice, session_id, "again")
    assert after[-1].name == "message_end"


async def test_llm_failing_before_the_first_word_stores_no_reply(
    http: httpx.AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.fail_status = 500
    session_id = await new_session(http, alice)
    events = await stream_turn(http, alice, session_id, "hello?")
    assert [e.name for e in events] == ["message_start", "error"]
    assert events[-1].data["status"] == 502
    assert await stored(db, session_id) == [(1, "user", "hello?")]
    fake_llm.fail_status = None
    events = await stream_turn(http, alice, session_id, "still?")
    assert events[-1].name == "message_end"
    assert [r[1:] for r in await stored(db, session_id)] == [
        ("user", "hello?"),
        ("user", "still?"),
        ("assistant", "echo: still?"),
    ]


async def test_rejoining_gets_exactly_the_rest(
    http: httpx.AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.reply = lambda _m: " ".join(f"part{i}" for i in range(12))
    fake_llm.chunk_delay = 0.05
    session_id = await new_session(http, alice)
    first: list[SseEvent] = []
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": "tell me", "stream": True},
        headers=alice,
    ) as response:
        async for event in read_events(response):
            first.append(event)
            if len(first) == 4:  # message_start and three deltas, then the page reloads
                break
    assistant_id = first[0].data["assistant_message_id"]
    async with http.stream(
        "GET",
        f"/api/sessions/{session_id}/messages/{assistant_id}/stream",
        headers={**alice, "Last-Event-ID": first[-1].id or ""},
    ) as response:
        assert response.status_code == 200
        rest = [event async for event in read_events(response)]
    assert [int(e.id or 0) for e in rest] == list(range(5, 5 + len(rest)))
    assert rest[-1].name == "message_end"
    text = "".join(e.data["text"] for e in first[1:] + rest[:-1])
    assert text == rest[-1].data["assistant_message"]["content"] == fake_llm.reply([])

    async with http.stream(
        "GET", f"/api/sessions/{session_id}/messages/{assistant_id}/stream", headers=alice
    ) as response:
        finished = [event async for event in read_events(response)]
    assert [e.name for e in finished] == ["message_end"]
    assert finished[0].data["assistant_message"]["content"] == fake_llm.reply([])


async def test_rejoining_someone_elses_or_an_unknown_message_is_not_found(
    http: httpx.AsyncClient, alice: Headers, bob: Headers
) -> None:
    session_id = await new_session(http, alice)
    events = await stream_turn(http, alice, session_id, "mine")
    assistant_id = events[0].data["assistant_message_id"]
    user_id = events[0].data["user_message"]["id"]
    paths = {
        "foreign": (f"/api/sessions/{session_id}/messages/{assistant_id}/stream", bob),
        "unknown": (f"/api/sessions/{session_id}/messages/999999999/stream", alice),
        "a question": (f"/api/sessions/{session_id}/messages/{user_id}/stream", alice),
    }
    for name, (path, headers) in paths.items():
        response = await http.get(path, headers=headers)
        assert response.status_code == 404, name
        assert response.json()["detail"]


async def test_heartbeats_keep_a_slow_generation_alive(
    http: httpx.AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(turn_routes, "HEARTBEAT_SECONDS", 0.1)
    fake_llm.delay = 0.6
    session_id = await new_session(http, alice)
    events = await stream_turn(http, alice, session_id, "slow")
    assert any(comment.startswith(": ping") for e in events for comment in e.comments)
    assert events[-1].name == "message_end"


async def test_a_reply_left_in_progress_by_a_dead_replica_is_marked_interrupted(
    llm_settings: Callable[..., Settings],
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with uvicorn_server(llm_settings()) as url, httpx.AsyncClient(base_url=url) as http:
        session_id = await new_session(http, alice)
        await stream_turn(http, alice, session_id, "first")
    # what a replica killed mid-reply leaves: a placeholder, and an expired lease
    async with db() as session:
        placeholder = ChatMessage(
            session_id=session_id, seq=4, role="assistant", content="", meta={"status": "streaming"}
        )
        session.add(ChatMessage(session_id=session_id, seq=3, role="user", content="second"))
        session.add(placeholder)
        await session.flush()
        await session.execute(
            update(ChatSession)
            .where(ChatSession.session_id == session_id)
            .values(
                message_count=4,
                generating_message_id=placeholder.id,
                turn_lock_owner="dead",
                turn_lock_expires_at=utcnow(),
            )
        )
        await session.commit()
    async with uvicorn_server(llm_settings()) as url:

        async def interrupted() -> bool:
            async with db() as session:
                message = await session.get(ChatMessage, placeholder.id)
            return message is not None and message.meta.get("status") == "interrupted"

        await eventually(interrupted)
        async with httpx.AsyncClient(base_url=url) as http:
            events = await stream_turn(http, alice, session_id, "third")
    async with db() as session:
        message = await session.get(ChatMessage, placeholder.id)
    assert message is not None
    assert message.meta == {"status": "interrupted"}
    assert events[-1].name == "message_end"
    assert [r[1:] for r in await stored(db, session_id)][-3:] == [
        ("assistant", ""),
        ("user", "third"),
        ("assistant", "echo: third"),
    ]


async def _message_id(db: async_sessionmaker[AsyncSession], session_id: str, seq: int) -> int:
    from sqlalchemy import select

    async with db() as session:
        found = await session.scalar(
            select(ChatMessage.id).where(
                ChatMessage.session_id == session_id, ChatMessage.seq == seq
            )
        )
    assert found is not None
    return int(found)


@pytest.mark.parametrize(
    ("knobs", "status", "partial"),
    [
        ({"fail_status": 500}, 502, False),
        ({"fail_status": 503}, 502, False),
        ({"drop": True}, 502, False),
        ({"delay": 3.0}, 504, False),
        ({"drop_after_chunks": 2}, 502, True),
        ({"chunk_delay": 3.0}, 504, False),
    ],
)
async def test_every_llm_fault_in_a_stream(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    knobs: dict[str, Any],
    status: int,
    partial: bool,
) -> None:
    async with (
        uvicorn_server(llm_settings(llm_timeout_seconds=1)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        session_id = await new_session(http, alice)
        fake_llm.reply = lambda _m: "one two three four five six"
        for name, value in knobs.items():
            setattr(fake_llm, name, value)
        events = await stream_turn(http, alice, session_id, "q")
        assert events[-1].name == "error"
        assert events[-1].data["status"] == status
        assert "message_end" not in [e.name for e in events]
        rows = await stored(db, session_id)
        assert rows[0] == (1, "user", "q")
        assert len(rows) == (2 if partial else 1)
        fake_llm.fail_status, fake_llm.drop, fake_llm.drop_after_chunks = None, False, None
        fake_llm.delay = fake_llm.chunk_delay = 0
        again = await stream_turn(http, alice, session_id, "again")
        assert again[-1].name == "message_end"


async def test_ragflow_failing_during_a_stream_still_answers(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: Any,
    alice: Headers,
) -> None:
    async with (
        uvicorn_server(ragflow_settings(ragflow_timeout_seconds=0.5)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        session_id = await new_session(http, alice)
        for failure in ("500", "code100", "drop", "slow"):
            fake_ragflow.fail = failure
            events = await stream_turn(http, alice, session_id, f"during {failure}")
            assert events[-1].name == "message_end"
            assert events[-1].data["assistant_message"]["metadata"]["grounding"] == "unavailable"
        fake_ragflow.fail = None
        events = await stream_turn(http, alice, session_id, "back")
        assert events[-1].data["assistant_message"]["metadata"]["grounding"] == "ragflow_chat"


async def _followed(generation: Generation, after: int = 0) -> list[tuple[int, str, Any]]:
    return [(e.id, e.name, e.data.get("text")) async for e in generation.follow(after=after)]


async def test_deltas_waiting_together_go_as_one_event_with_the_last_one_s_id() -> None:
    generation = Generation("s", 2)
    generation.publish(MESSAGE_START, {})
    live = asyncio.create_task(_followed(generation))
    await asyncio.sleep(0)
    generation.publish(DELTA, {"text": "a"})
    await asyncio.sleep(0)  # the follower sends "a" before the next ones come
    for text in ("b", "c", "d"):
        generation.publish(DELTA, {"text": text})  # together: one event
    await asyncio.sleep(0)
    generation.publish(MESSAGE_END, {})
    generation.finish()
    assert await live == [
        (1, MESSAGE_START, None),
        (2, DELTA, "a"),
        (5, DELTA, "bcd"),
        (6, MESSAGE_END, None),
    ]
    # A rejoin from any id gets the rest, the deltas waiting together again as one.
    assert await _followed(generation, after=3) == [(5, DELTA, "cd"), (6, MESSAGE_END, None)]
    assert await _followed(generation, after=5) == [(6, MESSAGE_END, None)]


@pytest.mark.parametrize(("flush_ms", "merged"), [(0, False), (150, True)])
async def test_stream_flush_ms_lets_a_delta_wait_for_the_next_ones(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    flush_ms: int,
    merged: bool,
) -> None:
    words = [f"w{i}" for i in range(12)]
    fake_llm.reply = lambda _m: " ".join(words)
    fake_llm.chunk_delay = 0.02
    settings = llm_settings(stream_flush_ms=flush_ms)
    async with uvicorn_server(settings) as url, httpx.AsyncClient(base_url=url) as http:
        session_id = await new_session(http, alice)
        events = await stream_turn(http, alice, session_id, "go")
    deltas = [e for e in events if e.name == "delta"]
    assert "".join(e.data["text"] for e in deltas) == " ".join(words)
    assert events[-1].data["assistant_message"]["content"] == " ".join(words)
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids))  # increasing, each once
    if merged:
        assert len(deltas) <= len(words) / 2
    else:
        assert len(deltas) == len(words)  # paced deltas go one by one
