"""Search (api-v2 §4): the caller's titles and messages of every branch, English words and
CJK substrings, newest first, paged without gaps or repeats; nobody else's; nothing deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.chat import recovery
from session_service.db.models import SEARCH_TERMS, ChatMessage, ChatSession
from session_service.db.search_terms import Query, terms
from tests.fakes.openai import FakeLLM
from tests.helpers import Headers, add_messages, answered, auth, new_session


async def _search(client: AsyncClient, headers: Headers, q: str, **params: Any) -> Any:
    response = await client.get("/api/search", params={"q": q, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _every_hit(client: AsyncClient, headers: Headers, q: str, limit: int) -> list[Any]:
    """Every item of every page, following next_cursor."""
    items: list[Any] = []
    cursor = None
    while True:
        page = await _search(
            client, headers, q, limit=limit, **({"cursor": cursor} if cursor else {})
        )
        assert len(page["items"]) <= limit
        items += page["items"]
        if (cursor := page["next_cursor"]) is None:
            return items


def _message_ids(items: list[Any]) -> list[int | None]:
    return [item["message"]["id"] if item["message"] else None for item in items]


def _quiet(fake_llm: FakeLLM) -> None:
    """Answers that never repeat the question."""
    fake_llm.reply = lambda _messages: "noted"


def test_terms_are_words_and_cjk_characters_and_pairs() -> None:
    assert terms("Hello, WORLD! e-mail 2026") == {"hello", "world", "e", "mail", "2026"}
    assert terms("我想去北京") == {"我", "想", "去", "北", "京", "我想", "想去", "去北", "北京"}
    assert terms("x" * 40) == {"x" * 32}
    assert terms("\uff21\uff22\uff23 cafe\u0301") == {"abc", "café"}  # folded
    query = Query.parse("北京都 Tokyo")
    assert query.terms == {"北京", "京都", "tokyo"}
    assert query.matches("tokyo: 北京都")
    assert not query.matches("tokyo: 北京和京都")  # its pairs, not the run
    assert not query.matches("Tokyoite 北京都")  # a word, not part of one


async def test_words_match_case_insensitively_as_words(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    _quiet(fake_llm)
    session_id = await new_session(llm_client, alice, title="travel")
    turn = await answered(llm_client, alice, session_id, "The Quick brown fox jumps")
    question = turn["user_message"]
    page = await _search(llm_client, alice, "quick FOX")
    assert _message_ids(page["items"]) == [question["id"]]
    (hit,) = page["items"]
    assert hit["session"]["session_id"] == session_id
    assert hit["session"]["title"] == "travel"
    assert hit["message"]["content"] == "The Quick brown fox jumps"
    assert hit["message"]["role"] == "user"
    assert hit["snippet"] == "The Quick brown fox jumps"
    assert page["next_cursor"] is None
    assert (await _search(llm_client, alice, "quic"))["items"] == []  # words, not prefixes
    assert (await _search(llm_client, alice, "quick cat"))["items"] == []  # every word
    assert (await _search(llm_client, alice, "?!"))["items"] == []  # nothing to look for


async def test_chinese_japanese_and_korean_match_by_substring(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    _quiet(fake_llm)
    session_id = await new_session(llm_client, alice, title="旅行")
    chinese = (await answered(llm_client, alice, session_id, "我想去北京旅游, 推荐一下"))[
        "user_message"
    ]
    japanese = (await answered(llm_client, alice, session_id, "東京タワーはどこですか"))[
        "user_message"
    ]
    korean = (await answered(llm_client, alice, session_id, "서울에서 맛집 추천해 주세요"))[
        "user_message"
    ]
    for q, expected in [
        ("北京", chinese),
        ("去北京旅", chinese),
        ("荐", chinese),
        ("タワー", japanese),
        ("東京タワーは", japanese),
        ("맛집", korean),
        ("서울에서 맛집", korean),
    ]:
        page = await _search(llm_client, alice, q)
        assert _message_ids(page["items"]) == [expected["id"]], q
        assert q.split()[0] in page["items"][0]["snippet"]
    assert (await _search(llm_client, alice, "北京推荐"))["items"] == []  # not a substring
    titles = (await _search(llm_client, alice, "旅"))["items"]
    assert _message_ids(titles) == [chinese["id"], None]  # the title: the session's creation
    assert titles[1]["snippet"] == "旅行"


async def test_titles_every_branch_and_archived_sessions_are_searched(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.reply = lambda messages: f"answer about {messages[-1]['content']}"
    session_id = await new_session(llm_client, alice, title="Lisbon trip, spring")
    first = await answered(llm_client, alice, session_id, "trams in lisbon")
    answer = first["assistant_message"]
    regenerated = await llm_client.post(
        f"/api/sessions/{session_id}/messages/{answer['id']}/regenerate", headers=alice
    )
    assert regenerated.status_code == 201, regenerated.text
    edited = await answered(llm_client, alice, session_id, "ferries in lisbon", parent_id=None)
    await llm_client.patch(f"/api/sessions/{session_id}", json={"archived": True}, headers=alice)
    items = await _every_hit(llm_client, alice, "Lisbon", limit=2)
    assert _message_ids(items) == [
        edited["assistant_message"]["id"],
        edited["user_message"]["id"],
        regenerated.json()["assistant_message"]["id"],
        answer["id"],
        first["user_message"]["id"],
        None,  # the title
    ]
    assert items[-1]["snippet"] == "Lisbon trip, spring"
    assert all(item["session"]["archived"] is True for item in items)
    assert _message_ids(await _every_hit(llm_client, alice, "trams", limit=5)) == [
        regenerated.json()["assistant_message"]["id"],
        answer["id"],
        first["user_message"]["id"],
    ]


async def test_pages_are_newest_first_without_gaps_or_repeats(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    _quiet(fake_llm)
    expected: list[int | None] = []
    for round_ in range(3):
        session_id = await new_session(llm_client, alice, title=f"needle {round_}")
        expected.insert(0, None)
        for n in range(3):
            turn = await answered(llm_client, alice, session_id, f"needle {round_}.{n}")
            expected.insert(0, turn["user_message"]["id"])
    await answered(llm_client, alice, await new_session(llm_client, alice), "haystack only")
    for limit in (1, 2, 4, 100):
        items = await _every_hit(llm_client, alice, "needle", limit=limit)
        assert _message_ids(items) == expected, limit
        times = [datetime.fromisoformat(_time(item)) for item in items]
        assert times == sorted(times, reverse=True)
    # written between pages: a new hit is newer than the cursor, so it is not repeated
    page = await _search(llm_client, alice, "needle", limit=3)
    await answered(llm_client, alice, session_id, "needle again")
    rest = await _every_hit_from(llm_client, alice, "needle", page["next_cursor"])
    assert _message_ids(page["items"] + rest) == expected


async def _every_hit_from(
    client: AsyncClient, headers: Headers, q: str, cursor: str | None
) -> list[Any]:
    items: list[Any] = []
    while cursor is not None:
        page = await _search(client, headers, q, limit=3, cursor=cursor)
        items += page["items"]
        cursor = page["next_cursor"]
    return items


def _time(item: Any) -> str:
    return str(item["message"]["timestamp"] if item["message"] else item["session"]["created_at"])


async def test_nobody_else_s_sessions_and_nothing_deleted(
    llm_client: AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    bob: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    _quiet(fake_llm)
    mine = await new_session(llm_client, alice, title="secret plans")
    turn = await answered(llm_client, alice, mine, "secret 计划")
    theirs = await new_session(llm_client, bob)
    await answered(llm_client, bob, theirs, "secret 计划 too")
    for q in ("secret", "计划", "plans"):
        assert all(
            item["session"]["session_id"] == theirs
            for item in (await _search(llm_client, bob, q))["items"]
        )
    assert len((await _search(llm_client, alice, "secret"))["items"]) == 2
    fork = await llm_client.post(
        f"/api/sessions/{mine}/fork",
        json={"message_id": turn["assistant_message"]["id"]},
        headers=alice,
    )
    assert fork.status_code == 201, fork.text
    forked = {
        item["session"]["session_id"]
        for item in (await _search(llm_client, alice, "计划"))["items"]
    }
    assert forked == {mine, fork.json()["session_id"]}
    for session_id in (mine, fork.json()["session_id"]):
        deleted = await llm_client.delete(f"/api/sessions/{session_id}", headers=alice)
        assert deleted.status_code == 204
    for q in ("secret", "计划", "plans"):
        assert (await _search(llm_client, alice, q))["items"] == []
    async with db() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(SEARCH_TERMS)
            .where(SEARCH_TERMS.c.message_id == turn["user_message"]["id"])
        )
    assert left == 0


async def test_a_failed_reply_is_searchable_as_far_as_it_was_generated(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.reply = lambda _messages: " ".join(f"partial{i}" for i in range(20))
    fake_llm.drop_after_chunks = 3
    session_id = await new_session(llm_client, alice)
    response = await llm_client.post(
        f"/api/sessions/{session_id}/messages",
        json={"content": "go", "stream": True},
        headers=alice,
    )
    assert "event: error" in response.text
    items = (await _search(llm_client, alice, "partial0"))["items"]
    assert [item["message"]["metadata"]["status"] for item in items] == ["interrupted"]


async def test_bad_queries_are_refused(client: AsyncClient, alice: Headers) -> None:
    for params in (
        {"q": ""},
        {"q": "x" * 201},
        {},
        {"q": "x", "limit": 0},
        {"q": "x", "limit": 101},
    ):
        response = await client.get("/api/search", params=params, headers=alice)
        assert response.status_code == 422, params
        assert response.json()["detail"]
    for cursor in ("nonsense", "eyJtIjogdHJ1ZX0", "eyJtIjoxLCJ0IjpbIngiXSwidGQiOmZhbHNlfQ"):
        response = await client.get(
            "/api/search", params={"q": "x", "cursor": cursor}, headers=alice
        )
        assert response.status_code == 422, cursor
    assert (await _search(client, alice, "x" * 200))["items"] == []
    assert (await client.get("/api/search", params={"q": "x"})).status_code == 401
    assert (await client.get("/api/search", params={"q": "x"}, headers=auth("nobody"))).json() == {
        "items": [],
        "next_cursor": None,
    }


async def test_a_turn_s_question_is_found_once_its_turn_ends_even_by_recovery(
    client: AsyncClient, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    """A replica that died mid-reply left a question and a placeholder: marking the reply
    interrupted indexes the question its turn would have."""
    session_id = await new_session(client, alice)
    await add_messages(db, session_id, ["orphaned question", ""])
    async with db() as session:
        placeholder = await session.scalar(
            select(ChatMessage).where(ChatMessage.session_id == session_id, ChatMessage.seq == 2)
        )
        assert placeholder is not None
        placeholder.meta = {"status": "streaming"}
        await session.execute(
            update(ChatSession)
            .where(ChatSession.session_id == session_id)
            .values(generating_message_id=placeholder.id)
        )
        await session.commit()
    assert (await _search(client, alice, "orphaned"))["items"] == []
    assert await recovery.interrupt_orphans(db) >= 1
    (hit,) = (await _search(client, alice, "orphaned"))["items"]
    assert hit["message"]["id"] == placeholder.parent_id


async def test_a_long_query_is_answered(client: AsyncClient, alice: Headers) -> None:
    """200 characters of Chinese (199 pairs), or 60 words: a few looked up, all checked."""
    text = "".join(chr(0x4E00 + i * 13) for i in range(200))
    session_id = await new_session(client, alice)
    turn = await answered(client, alice, session_id, text)
    found = await _search(client, alice, text)
    assert turn["user_message"]["id"] in _message_ids(found["items"])
    assert (await _search(client, alice, text[:199] + "x"))["items"] == []
    words = " ".join(f"w{i}" for i in range(40))
    turn = await answered(client, alice, session_id, words)
    assert turn["user_message"]["id"] in _message_ids(
        (await _search(client, alice, words))["items"]
    )
    assert (await _search(client, alice, words + " absent"))["items"] == []
