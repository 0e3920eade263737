"""The conversation as a tree (api-v2 §1): parents and siblings, edits into branches, switching
branch, regenerating an answer; what GET returns and what the LLM is shown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from session_service.config import Settings
from session_service.db.models import ChatMessage
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import (
    Headers,
    answered,
    conversation,
    eventually,
    new_session,
    stored,
    turn,
)
from tests.sse import read_events


async def _branch(client: AsyncClient, headers: Headers, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/sessions/{session_id}", headers=headers)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def _contents(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages]


async def test_a_line_of_turns_is_one_branch(llm_client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    second = await answered(llm_client, alice, session_id, "two")
    messages = await _branch(llm_client, alice, session_id)
    ids = [m["id"] for m in messages]
    assert [m["parent_id"] for m in messages] == [None, *ids[:-1]]
    assert [m["sibling_ids"] for m in messages] == [[i] for i in ids]
    assert all(m["feedback"] is None for m in messages)
    assert ids == [
        first["user_message"]["id"],
        first["assistant_message"]["id"],
        second["user_message"]["id"],
        second["assistant_message"]["id"],
    ]
    assert second["user_message"]["parent_id"] == first["assistant_message"]["id"]
    assert second["assistant_message"]["sibling_ids"] == [second["assistant_message"]["id"]]
    session = (await llm_client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert session["active_message_id"] == ids[-1]
    assert session["message_count"] == 4


async def test_an_edit_makes_a_branch_the_llm_and_get_follow(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    old = await answered(llm_client, alice, session_id, "two")
    await answered(llm_client, alice, session_id, "three")
    answer_one = first["assistant_message"]["id"]
    edit = await answered(llm_client, alice, session_id, "two, better", parent_id=answer_one)
    question = edit["user_message"]
    assert question["parent_id"] == answer_one
    assert question["sibling_ids"] == [old["user_message"]["id"], question["id"]]
    assert conversation(fake_llm.calls[-1]) == [
        ("user", "one"),
        ("assistant", first["assistant_message"]["content"]),
        ("user", "two, better"),
    ]
    messages = await _branch(llm_client, alice, session_id)
    assert _contents(messages) == [
        "one",
        first["assistant_message"]["content"],
        "two, better",
        edit["assistant_message"]["content"],
    ]
    assert messages[2]["sibling_ids"] == [old["user_message"]["id"], question["id"]]
    session = (await llm_client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert session["message_count"] == 8
    assert session["active_message_id"] == edit["assistant_message"]["id"]
    # the next turn follows the new branch
    await answered(llm_client, alice, session_id, "four")
    assert [text for _, text in conversation(fake_llm.calls[-1])][::2] == [
        "one",
        "two, better",
        "four",
    ]


async def test_an_edit_of_the_first_message_starts_a_new_root(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    edit = await answered(llm_client, alice, session_id, "uno", parent_id=None)
    assert edit["user_message"]["parent_id"] is None
    assert edit["user_message"]["sibling_ids"] == [
        first["user_message"]["id"],
        edit["user_message"]["id"],
    ]
    assert conversation(fake_llm.calls[-1]) == [("user", "uno")]
    assert _contents(await _branch(llm_client, alice, session_id))[0] == "uno"


async def test_an_edit_needs_a_finished_answer_of_the_session(
    llm_client: AsyncClient, alice: Headers, bob: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    other = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    elsewhere = await answered(llm_client, alice, other, "elsewhere")
    before = await stored(db, session_id)
    for parent in (
        first["user_message"]["id"],  # a question, not an answer
        elsewhere["assistant_message"]["id"],  # another session's
        10**12,  # no such message
    ):
        refused = await turn(llm_client, alice, session_id, "edit", parent_id=parent)
        assert refused.status_code == 422, refused.text
        assert str(parent) in refused.json()["detail"]
    for bad in (0, -1, "3", 2**63):
        refused = await turn(llm_client, alice, session_id, "edit", parent_id=bad)
        assert refused.status_code == 422
    not_yours = await turn(
        llm_client, bob, session_id, "edit", parent_id=first["assistant_message"]["id"]
    )
    assert not_yours.status_code == 404
    assert await stored(db, session_id) == before


async def test_a_switch_makes_the_newest_leaf_below_active(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    old = await answered(llm_client, alice, session_id, "two")
    old_next = await answered(llm_client, alice, session_id, "three")
    answer_one = first["assistant_message"]["id"]
    await answered(llm_client, alice, session_id, "two, again", parent_id=answer_one)
    # back to the old branch, named by its question: down to its newest leaf
    switched = await llm_client.patch(
        f"/api/sessions/{session_id}",
        json={"active_message_id": old["user_message"]["id"]},
        headers=alice,
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["active_message_id"] == old_next["assistant_message"]["id"]
    assert _contents(await _branch(llm_client, alice, session_id))[2:4] == [
        "two",
        old["assistant_message"]["content"],
    ]
    await answered(llm_client, alice, session_id, "four")
    assert [text for _, text in conversation(fake_llm.calls[-1])][::2] == [
        "one",
        "two",
        "three",
        "four",
    ]
    # switching to the root goes down to the newest leaf of all
    newest = await llm_client.patch(
        f"/api/sessions/{session_id}",
        json={"active_message_id": first["user_message"]["id"]},
        headers=alice,
    )
    assert (
        newest.json()["active_message_id"]
        == (await _branch(llm_client, alice, session_id))[-1]["id"]
    )


async def test_a_switch_to_a_message_not_in_the_session_is_refused(
    llm_client: AsyncClient, alice: Headers, bob: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    other = await new_session(llm_client, alice)
    await answered(llm_client, alice, session_id, "one")
    elsewhere = await answered(llm_client, alice, other, "elsewhere")
    for target in (elsewhere["user_message"]["id"], 10**12):
        refused = await llm_client.patch(
            f"/api/sessions/{session_id}", json={"active_message_id": target}, headers=alice
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "invalid_input"
    not_yours = await llm_client.patch(
        f"/api/sessions/{session_id}",
        json={"active_message_id": elsewhere["user_message"]["id"]},
        headers=bob,
    )
    assert not_yours.status_code == 404


async def test_regenerate_answers_the_same_question_beside_the_old_answer(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    second = await answered(llm_client, alice, session_id, "two")
    old = second["assistant_message"]
    fake_llm.reply = lambda messages: "another answer"
    response = await llm_client.post(
        f"/api/sessions/{session_id}/messages/{old['id']}/regenerate", headers=alice
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_message"]["id"] == second["user_message"]["id"]
    new = body["assistant_message"]
    assert new["content"] == "another answer"
    assert new["parent_id"] == second["user_message"]["id"]
    assert new["sibling_ids"] == [old["id"], new["id"]]
    # generated from the branch up to the question, not from the old answer
    assert conversation(fake_llm.calls[-1]) == [
        ("user", "one"),
        ("assistant", first["assistant_message"]["content"]),
        ("user", "two"),
    ]
    messages = await _branch(llm_client, alice, session_id)
    assert [m["id"] for m in messages][-1] == new["id"]
    assert messages[-1]["sibling_ids"] == [old["id"], new["id"]]
    # the old answer is still there, a switch away
    await llm_client.patch(
        f"/api/sessions/{session_id}", json={"active_message_id": old["id"]}, headers=alice
    )
    assert (await _branch(llm_client, alice, session_id))[-1]["content"] == old["content"]


async def test_regenerate_streams_as_a_turn_does(llm_client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    async with llm_client.stream(
        "POST",
        f"/api/sessions/{session_id}/messages/{first['assistant_message']['id']}/regenerate",
        json={"stream": True},
        headers=alice,
    ) as response:
        assert response.status_code == 201
        events = [event async for event in read_events(response)]
    start, end = events[0], events[-1]
    assert start.name == "message_start"
    assert start.data["user_message"]["id"] == first["user_message"]["id"]
    assert end.name == "message_end"
    new = end.data["assistant_message"]
    assert new["id"] == start.data["assistant_message_id"]
    assert new["sibling_ids"] == [first["assistant_message"]["id"], new["id"]]
    assert "".join(e.data["text"] for e in events if e.name == "delta") == new["content"]


async def test_regenerate_refuses_what_is_not_an_answer_of_the_session(
    llm_client: AsyncClient, alice: Headers, bob: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    other = await new_session(llm_client, alice)
    first = await answered(llm_client, alice, session_id, "one")
    elsewhere = await answered(llm_client, alice, other, "elsewhere")
    before = await stored(db, session_id)
    base = f"/api/sessions/{session_id}/messages"
    question = await llm_client.post(
        f"{base}/{first['user_message']['id']}/regenerate", headers=alice
    )
    assert question.status_code == 422
    for missing in (elsewhere["assistant_message"]["id"], 10**12):
        response = await llm_client.post(f"{base}/{missing}/regenerate", headers=alice)
        assert response.status_code == 404, response.text
    not_yours = await llm_client.post(
        f"{base}/{first['assistant_message']['id']}/regenerate", headers=bob
    )
    assert not_yours.status_code == 404
    unknown_field = await llm_client.post(
        f"{base}/{first['assistant_message']['id']}/regenerate",
        json={"content": "x"},
        headers=alice,
    )
    assert unknown_field.status_code == 422
    assert await stored(db, session_id) == before


async def test_paging_the_active_branch_has_no_gaps_or_repeats(
    llm_client: AsyncClient, alice: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    answers = [await answered(llm_client, alice, session_id, f"q{i}") for i in range(6)]
    # a side branch from the third answer, then back to the main line
    await answered(
        llm_client, alice, session_id, "side", parent_id=answers[2]["assistant_message"]["id"]
    )
    await llm_client.patch(
        f"/api/sessions/{session_id}",
        json={"active_message_id": answers[5]["assistant_message"]["id"]},
        headers=alice,
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"before": cursor} if cursor else {})
        page = (
            await llm_client.get(
                f"/api/sessions/{session_id}/messages", params=params, headers=alice
            )
        ).json()
        seen = _contents(page["items"]) + seen
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = []
    for pair in answers:
        expected += [pair["user_message"]["content"], pair["assistant_message"]["content"]]
    assert seen == expected


async def test_a_fork_copies_the_branch_up_to_a_message(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, bob: Headers
) -> None:
    session_id = await new_session(llm_client, alice, title="trip", context={"lang": "pt"})
    first = await answered(llm_client, alice, session_id, "one")
    await answered(llm_client, alice, session_id, "two")
    source_before = await _branch(llm_client, alice, session_id)
    response = await llm_client.post(
        f"/api/sessions/{session_id}/fork",
        json={"message_id": first["assistant_message"]["id"]},
        headers=alice,
    )
    assert response.status_code == 201, response.text
    forked = response.json()
    assert forked["session_id"] != session_id
    assert (forked["title"], forked["context"], forked["message_count"]) == (
        "trip",
        {"lang": "pt"},
        2,
    )
    copies = await _branch(llm_client, alice, forked["session_id"])
    originals = source_before[:2]
    assert [(m["role"], m["content"], m["metadata"], m["timestamp"]) for m in copies] == [
        (m["role"], m["content"], m["metadata"], m["timestamp"]) for m in originals
    ]
    assert not {m["id"] for m in copies} & {m["id"] for m in originals}
    assert copies[1]["parent_id"] == copies[0]["id"]
    assert forked["active_message_id"] == copies[1]["id"]
    # the source is unchanged, and the fork goes its own way
    assert await _branch(llm_client, alice, session_id) == source_before
    await answered(llm_client, alice, forked["session_id"], "three")
    assert [text for _, text in conversation(fake_llm.calls[-1])][::2] == ["one", "three"]
    # titled, and refused for what is not the session's
    titled = await llm_client.post(
        f"/api/sessions/{session_id}/fork",
        json={"message_id": first["user_message"]["id"], "title": "just the question"},
        headers=alice,
    )
    assert titled.json()["title"] == "just the question"
    assert titled.json()["message_count"] == 1
    for body, status in (
        ({"message_id": 10**12}, 422),
        ({"message_id": 0}, 422),
        ({}, 422),
        ({"message_id": first["user_message"]["id"], "title": " "}, 422),
    ):
        refused = await llm_client.post(
            f"/api/sessions/{session_id}/fork", json=body, headers=alice
        )
        assert refused.status_code == status, (body, refused.text)
    not_yours = await llm_client.post(
        f"/api/sessions/{session_id}/fork",
        json={"message_id": first["user_message"]["id"]},
        headers=bob,
    )
    assert not_yours.status_code == 404


async def test_replicas_editing_and_answering_never_mix_branches(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Edits, regenerations and turns on two replicas at once: every answer was generated from
    exactly the branch above it, whichever replica's agent answered."""
    seen: dict[str, list[tuple[str, str]]] = {}

    def reply(messages: list[dict[str, Any]]) -> str:
        text = f"answer {len(seen)}"
        seen[text] = [(m["role"], m["content"]) for m in messages if m["role"] != "system"]
        return text

    fake_llm.reply = reply
    async with serve_app(llm_settings()) as one, serve_app(llm_settings()) as two:
        session_id = await new_session(one, alice)
        answers = [(await answered(one, alice, session_id, "q0"))["assistant_message"]["id"]]
        for round_ in range(6):
            base = answers[round_ % len(answers)]
            results = await asyncio.gather(
                turn(one, alice, session_id, f"line {round_}"),
                turn(two, alice, session_id, f"edit {round_}", parent_id=base),
                two.post(
                    f"/api/sessions/{session_id}/messages/{answers[-1]}/regenerate",
                    headers=alice,
                ),
                turn(two, alice, session_id, f"after {round_}"),
            )
            for result in results:
                assert result.status_code == 201, result.text
                answers.append(result.json()["assistant_message"]["id"])
    async with db() as session:
        rows = (
            await session.scalars(
                select(ChatMessage).where(col(ChatMessage.session_id) == session_id)
            )
        ).all()
    by_id = {row.id: row for row in rows}
    replies = [row for row in rows if row.role == "assistant"]
    assert len(replies) == 25
    for row in replies:
        path = []
        parent = row.parent_id
        while parent is not None:
            path.append((by_id[parent].role, by_id[parent].content))
            parent = by_id[parent].parent_id
        assert seen[row.content] == path[::-1], row.content


async def test_while_a_reply_runs_switch_and_reject_answer_409(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    async with serve_app(llm_settings()) as client:
        session_id = await new_session(client, alice)
        first = await answered(client, alice, session_id, "one")
        answer = first["assistant_message"]["id"]
        fake_llm.delay = 1.5
        running = asyncio.create_task(turn(client, alice, session_id, "slow"))

        async def generating() -> bool:
            detail = await client.get(f"/api/sessions/{session_id}", headers=alice)
            return bool(detail.json()["message_count"] == 4)

        await eventually(generating)
        switched = await client.patch(
            f"/api/sessions/{session_id}", json={"active_message_id": answer}, headers=alice
        )
        assert switched.status_code == 409
        assert switched.json()["code"] == "session_busy"
        rejected = await client.post(
            f"/api/sessions/{session_id}/messages/{answer}/regenerate",
            json={"if_busy": "reject"},
            headers=alice,
        )
        assert rejected.status_code == 409
        edit = await turn(client, alice, session_id, "e", parent_id=answer, if_busy="reject")
        assert edit.status_code == 409
        assert (await running).status_code == 201
    assert fake_llm.calls[-1]["messages"][-1]["content"] == "slow"  # nothing else was asked
