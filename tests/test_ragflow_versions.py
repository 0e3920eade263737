"""RAGFlow as each supported version answers (docs/ragflow.md): one test per difference, run
against each version it concerns, through the production client and the real app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.chat import mirror as mirror_module
from session_service.config import Settings
from session_service.db.models import ChatSession, RagflowDeletion
from session_service.ragflow import client as ragflow_client
from session_service.ragflow.client import RagflowClient, new_http_client
from session_service.ragflow.errors import (
    RagflowAuthError,
    RagflowChatForbidden,
    RagflowNotFound,
    RagflowRouteMissing,
    RagflowUnavailable,
    RagflowUnsupported,
    misconfigured,
)
from session_service.ragflow.models import Reference, cited_indices
from tests.conftest import serve_app
from tests.fakes.ragflow import API_KEY, CHAT_ID, FakeRagflow
from tests.helpers import answered, auth, created_session, eventually, new_session
from tests.test_ragflow import pending_deletions

V24, V25_0, V25_1, V25_6, V27 = (0, 24, 0), (0, 25, 0), (0, 25, 1), (0, 25, 6), (0, 27, 0)
ALL = [V24, V25_0, V25_1, V25_6, V27]
CHAT_MODE = [V24, V25_0, V25_6, V27]  # v0.25.1-v0.25.5 cannot ground a chat (see README)
NEW_CHAT = "chat0000000000000000000000000002"
HEADERS = auth("versions")
Factory = async_sessionmaker[AsyncSession]


def versions(*which: tuple[int, int, int]) -> Any:
    return pytest.mark.parametrize("version", which, ids=[".".join(map(str, v)) for v in which])


@pytest.fixture
async def client_of(fake_ragflow: FakeRagflow) -> Any:
    async with new_http_client(fake_ragflow.url, API_KEY, 2) as http:
        yield RagflowClient(http, CHAT_ID, ["ds-1", "ds-2"])


async def _mirror(db: Factory, session_id: str) -> tuple[str | None, str | None]:
    async with db() as session:
        row = await session.get(ChatSession, session_id)
        assert row is not None
        return row.ragflow_session_id, row.ragflow_chat_id


@versions(*CHAT_MODE)
@pytest.mark.parametrize("recorded", [True, False], ids=["chat-recorded", "recorded-at-start"])
async def test_after_the_chat_changes_a_session_gets_a_mirror_in_the_new_chat(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    db: Factory,
    version: tuple[int, int, int],
    recorded: bool,
) -> None:
    fake_ragflow.version = version
    async with serve_app(ragflow_settings()) as client:
        session_id = await new_session(client, HEADERS)
    old, chat = await _mirror(db, session_id)
    assert old in fake_ragflow.sessions_of(CHAT_ID)
    assert chat == CHAT_ID
    if not recorded:  # a row from before the chat was recorded, then the upgrade's start
        async with db() as session, session.begin():
            await session.execute(
                update(ChatSession)
                .where(ChatSession.session_id == session_id)  # type: ignore[arg-type]
                .values(ragflow_chat_id=None)
            )
        async with serve_app(ragflow_settings()):
            assert await _mirror(db, session_id) == (old, CHAT_ID)
    fake_ragflow.add_chat(NEW_CHAT)
    async with serve_app(ragflow_settings(ragflow_chat_id=NEW_CHAT)) as client:
        answer = await answered(client, HEADERS, session_id, "What is the capital of France?")
        assert answer["assistant_message"]["metadata"]["grounding"] == "ragflow_chat"
        new, chat = await _mirror(db, session_id)
        assert (chat, new in fake_ragflow.sessions_of(NEW_CHAT)) == (NEW_CHAT, True)
        # ... and the old one is deleted from the chat that made it
        await eventually(lambda: _gone(fake_ragflow, old, db))


@versions(*CHAT_MODE)
async def test_every_wording_of_not_this_chats_session_is_not_found(
    client_of: RagflowClient, fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    """ "Session not found!", "Session does not belong to this chat!" (v0.25.1+), "You don't
    own the session X" (older): each makes the mirror again (a session recorded under the
    wrong chat is found out this way)."""
    fake_ragflow.version = version
    fake_ragflow.add_chat(NEW_CHAT)
    for session in (fake_ragflow.add_session(NEW_CHAT), "0" * 32):  # another chat's; unknown
        with pytest.raises(RagflowNotFound):
            await client_of.ask(session, "q", "u")


async def _gone(fake: FakeRagflow, mirror: str | None, db: Factory) -> bool:
    return mirror not in fake.sessions and await pending_deletions(db) == 0


@versions(V24, V25_1, V27)
async def test_a_deletion_goes_to_the_chat_that_owns_the_session(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    db: Factory,
    version: tuple[int, int, int],
) -> None:
    fake_ragflow.version = version
    async with serve_app(ragflow_settings()) as client:
        created = await created_session(client, HEADERS)
    fake_ragflow.add_chat(NEW_CHAT)
    async with serve_app(ragflow_settings(ragflow_chat_id=NEW_CHAT)) as client:
        deleted = await client.delete(f"/api/sessions/{created['session_id']}", headers=HEADERS)
        assert deleted.status_code == 204
        await eventually(lambda: _gone(fake_ragflow, created["ragflow_session_id"], db))
    [request] = fake_ragflow.calls("DELETE")
    assert request.path == f"/api/v1/chats/{CHAT_ID}/sessions"
    assert request.json == {"ids": [created["ragflow_session_id"]]}


@versions(*ALL)
async def test_a_rename_reaches_the_mirror(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    version: tuple[int, int, int],
) -> None:
    fake_ragflow.version = version
    async with serve_app(ragflow_settings()) as client:
        created = await created_session(client, HEADERS, title="before")
        renamed = await client.patch(
            f"/api/sessions/{created['session_id']}", json={"title": "after 𝄞"}, headers=HEADERS
        )
        assert renamed.status_code == 200
    assert fake_ragflow.sessions[created["ragflow_session_id"]]["name"] == "after 𝄞"
    methods = [r.method for r in fake_ragflow.server.requests if r.method in ("PATCH", "PUT")]
    # PATCH from v0.25.1; before it, PATCH meets HTTP 200 code 100 <MethodNotAllowed>: PUT
    assert methods == (["PATCH"] if version >= V25_1 else ["PATCH", "PUT"])


@versions(V24, V25_0, V27)
async def test_a_chat_the_key_cannot_use_is_neither_gone_nor_a_bad_key(
    client_of: RagflowClient,
    fake_ragflow: FakeRagflow,
    ragflow_settings: Callable[..., Settings],
    db: Factory,
    caplog: pytest.LogCaptureFixture,
    version: tuple[int, int, int],
) -> None:
    fake_ragflow.version = version
    foreign = "chat0000000000000000000000000666"
    fake_ragflow.add_chat(foreign, owned=False)
    mirror = fake_ragflow.add_session(foreign, "not ours to delete")
    with pytest.raises(RagflowChatForbidden):
        await client_of.delete_session(mirror, foreign)
    # Through the deletion queue: never marked done, and said as what it is.
    async with db() as session, session.begin():
        session.add(RagflowDeletion(ragflow_session_id=mirror, chat_id=foreign))
    async with serve_app(ragflow_settings()):
        await eventually(lambda: _attempted(db, mirror))
    assert mirror in fake_ragflow.sessions_of(foreign)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"chat={foreign}" in line and "cannot use" in line for line in said), said
    async with db() as session, session.begin():  # leave no pending row to other tests
        await session.execute(
            RagflowDeletion.__table__.delete().where(  # type: ignore[attr-defined]
                RagflowDeletion.ragflow_session_id == mirror  # type: ignore[arg-type]
            )
        )


async def _attempted(db: Factory, mirror: str) -> bool:
    async with db() as session:
        attempts = await session.scalar(
            select(RagflowDeletion.attempts).where(
                RagflowDeletion.ragflow_session_id == mirror  # type: ignore[arg-type]
            )
        )
    return bool(attempts)


@versions(V24, V27)
async def test_a_bad_key_is_still_a_bad_key(
    fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    fake_ragflow.version = version
    async with new_http_client(fake_ragflow.url, "ragflow-wrong", 2) as http:
        with pytest.raises(RagflowAuthError):
            await RagflowClient(http, CHAT_ID, []).delete_session("f" * 32, CHAT_ID)


@versions(V24, V25_0, V25_6, V27)
async def test_completions_take_the_current_route_where_the_server_has_it(
    client_of: RagflowClient, fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    fake_ragflow.version = version
    mirror = await client_of.create_session("s", "u")
    for question in ("one?", "two?"):
        grounding = await client_of.ask(mirror, question, "u")
        assert "Paris" in grounding.text
    paths = [r.path for r in fake_ragflow.calls("POST", "/completions")]
    current, old = "/api/v1/chat/completions", f"/api/v1/chats/{CHAT_ID}/completions"
    # an older server's 404 switches the process to the old route, once
    assert paths == ([current, current] if version >= V25_1 else [current, old, old])
    assert all(r.json["stream"] is False for r in fake_ragflow.calls("POST", "/completions"))


async def test_a_missing_route_is_loud(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with new_http_client(fake_ragflow.url + "/gone", API_KEY, 2) as http:
        with pytest.raises(RagflowRouteMissing):
            await RagflowClient(http, CHAT_ID, []).ask("0" * 32, "q", "u")
    async with serve_app(ragflow_settings(ragflow_base_url=fake_ragflow.url + "/gone")) as client:
        created = await created_session(client, HEADERS)
        answer = await answered(client, HEADERS, created["session_id"], "anyone there?")
        metrics = (await client.get("/metrics")).text
    assert answer["assistant_message"]["metadata"]["grounding"] == "unavailable"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("HTTP 404" in line for line in errors), errors
    assert 'kind="route_missing"' in metrics


async def test_a_version_that_cannot_ground_a_chat_says_so(
    client_of: RagflowClient, fake_ragflow: FakeRagflow
) -> None:
    fake_ragflow.version = V25_1
    mirror = await client_of.create_session("s", "u")
    with pytest.raises(RagflowUnsupported, match=r"v0\.25\.6"):
        await client_of.ask(mirror, "q", "u")
    assert (await client_of.retrieve("capital")).references  # retrieval still works


async def test_only_calls_safe_to_repeat_are_retried(
    client_of: RagflowClient, fake_ragflow: FakeRagflow
) -> None:
    mirror = await client_of.create_session("s", "u")
    count = len(fake_ragflow.server.requests)

    def sent() -> int:
        nonlocal count
        before, count = count, len(fake_ragflow.server.requests)
        return count - before

    fake_ragflow.fail_next_mode = "502"
    fake_ragflow.fail_next = 1
    with pytest.raises(RagflowUnavailable):
        await client_of.create_session("t", "u")
    assert sent() == 1  # a second create would make a session no one deletes
    fake_ragflow.fail_next = 1
    with pytest.raises(RagflowUnavailable):
        await client_of.ask(mirror, "q", "u")
    assert sent() == 1  # a second ask would ask (and pay) twice
    for idempotent in (
        lambda: client_of.retrieve("q"),
        lambda: client_of.rename_session(mirror, "renamed", CHAT_ID),
        lambda: client_of.delete_session(mirror, CHAT_ID),
    ):
        fake_ragflow.fail_next = 1
        await idempotent()
        assert sent() == 2


@versions(V24, V25_0, V27)
async def test_references_mark_what_the_answer_cites(
    client_of: RagflowClient, fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    fake_ragflow.version = version
    mirror = await client_of.create_session("s", "u")
    grounding = await client_of.ask(mirror, "capital?", "u")
    assert [(r.chunk_id, r.cited) for r in grounding.references] == [
        ("chunk-paris", True),  # [ID:0] in the answer
        ("chunk-seine", False),  # retrieved, not cited
    ]
    assert "[ID:0] geography.pdf" in grounding.text
    assert "[ID:1] rivers.md" in grounding.text


@versions(V24, V25_0, V27)
async def test_a_streamed_answer_is_folded_once(
    client_of: RagflowClient, fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    """v0.25.0-v0.26.0 repeat the whole answer in the final event."""
    fake_ragflow.version = version
    fake_ragflow.ignore_stream_flag = True
    mirror = await client_of.create_session("s", "u")
    grounding = await client_of.ask(mirror, "capital?", "u")
    answer = grounding.text.split("\n\n")[0]
    assert answer.count("Paris, according to the documents") == 1


async def test_a_nan_similarity_never_reaches_the_database(
    ragflow_settings: Callable[..., Settings], fake_ragflow: FakeRagflow
) -> None:
    fake_ragflow.nan_similarity = True
    async with serve_app(ragflow_settings(ragflow_dataset_ids="ds-1,ds-2")) as client:
        created = await created_session(client, HEADERS)
        answer = await answered(client, HEADERS, created["session_id"], "capital?")
        read = await client.get(f"/api/sessions/{created['session_id']}", headers=HEADERS)
    references = answer["assistant_message"]["metadata"]["references"]
    similarity = {ref["chunk_id"]: ref["similarity"] for ref in references}
    assert similarity == {"chunk-paris": None, "chunk-seine": 0.74}  # Paris's was NaN
    assert read.json()["messages"][-1]["metadata"]["references"] == references


async def test_the_route_choice_is_checked_again_after_an_upgrade(
    client_of: RagflowClient, fake_ragflow: FakeRagflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ragflow_client, "ROUTE_RECHECK_SECONDS", 0.0)
    fake_ragflow.version = V24
    mirror = await client_of.create_session("s", "u")
    await client_of.ask(mirror, "before the upgrade", "u")
    fake_ragflow.version = V27
    await client_of.ask(mirror, "after it", "u")
    paths = [r.path for r in fake_ragflow.calls("POST", "/completions")]
    current, old = "/api/v1/chat/completions", f"/api/v1/chats/{CHAT_ID}/completions"
    assert paths == [current, old, current]


@versions(V24, V27)
async def test_long_titles_fit_ragflows_names(
    client_of: RagflowClient, fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    """v0.24 stores a name as sent into a 255-character column: never send a longer one."""
    fake_ragflow.version = version
    mirror = await client_of.create_session("t" * 500, "u")
    await client_of.rename_session(mirror, "r" * 500, CHAT_ID)
    sent = [r.json["name"] for r in fake_ragflow.server.requests if r.json and "name" in r.json]
    assert len(sent) >= 2  # the create and the rename (PATCH, and PUT where it must)
    assert {len(name) for name in sent} == {255}


def test_similarities_and_citations_as_ragflow_writes_them() -> None:
    chunk = {"id": "c", "content": "x"}
    for odd in (float("nan"), float("inf"), 10**400, True, "0.5"):
        assert Reference.from_chunk({**chunk, "similarity": odd}).similarity is None
    assert cited_indices("Paris [ID:\u0660], list[1], [ID:12] and [ID: 3]") == {0, 1, 3, 12}


@versions(V24, V27)
async def test_a_dataset_the_key_cannot_use_is_a_misconfiguration(
    fake_ragflow: FakeRagflow, version: tuple[int, int, int]
) -> None:
    fake_ragflow.version = version
    async with new_http_client(fake_ragflow.url, API_KEY, 2) as http:
        with pytest.raises(RagflowChatForbidden, match="ds-9") as raised:
            await RagflowClient(http, CHAT_ID, ["ds-1", "ds-9"]).retrieve("q")
    assert misconfigured(raised.value)  # an error in the log, not a warning each turn


@versions(V24, V27)
async def test_a_create_whose_answer_was_lost_is_adopted_not_made_twice(
    ragflow_settings: Callable[..., Settings],
    fake_ragflow: FakeRagflow,
    db: Factory,
    monkeypatch: pytest.MonkeyPatch,
    version: tuple[int, int, int],
) -> None:
    monkeypatch.setattr(mirror_module, "LOST_CREATE_MIN_AGE_SECONDS", 0.2)
    fake_ragflow.version = version
    fake_ragflow.slow_seconds = 1.5  # past the client's 1 s: RAGFlow creates, we never hear
    fake_ragflow.fail_next, fake_ragflow.fail_next_mode = 1, "slow"
    async with serve_app(ragflow_settings(ragflow_timeout_seconds=1)) as client:
        created = await created_session(client, HEADERS, title="lost in transit")
        assert created["ragflow_session_id"] is None
        await asyncio.sleep(1.0)  # RAGFlow made it meanwhile
        assert len(fake_ragflow.sessions_of(CHAT_ID)) == 1
        answer = await answered(client, HEADERS, created["session_id"], "capital?")
    assert answer["assistant_message"]["metadata"]["grounding"] == "ragflow_chat"
    [only] = fake_ragflow.sessions_of(CHAT_ID)  # adopted: no second session in RAGFlow
    assert (await _mirror(db, created["session_id"]))[0] == only
    assert len(fake_ragflow.calls("POST", "/sessions")) == 1
