"""Search across a user's conversations: messages (every branch) and titles that hold every
word and every CJK run of the query, newest first, each with a snippet around the match.

Messages are found through their terms (db/search_terms.py), then checked whole: a CJK run's
pairs may all be in a text without the run. Titles, a few per session, are matched directly.
The two are merged by time (a message's, a title's session's creation) and each is paged by a
position of its own, so neither skips nor repeats whatever the other holds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from session_service.auth import User
from session_service.chat.public import MessagePublic, described
from session_service.db.models import ChatMessage, ChatSession
from session_service.db.search import SearchRepository
from session_service.db.search_terms import Query
from session_service.db.types import MAX_POSITION

QUERY_LENGTH = 200
SNIPPET_BEFORE = 40  # characters shown before the match
SNIPPET_LENGTH = 160
# Candidates checked per page at most, in rounds: a page may hold fewer hits than asked for
# (then next_cursor goes on), rather than scan on for a rare exact CJK run.
CHECK_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class Position:
    """Where the next page goes on: messages below an id (0: none left); titles after a
    session's (created_at, session_id) (None: from the newest), or none left."""

    messages_below: int = MAX_POSITION
    titles_after: tuple[datetime, str] | None = None
    titles_done: bool = False

    @property
    def done(self) -> bool:
        return self.messages_below == 0 and self.titles_done


@dataclass(frozen=True, slots=True)
class Hit:
    session: ChatSession
    message: MessagePublic | None  # None: the session's title matched
    snippet: str

    @property
    def at(self) -> datetime:
        return self.message.timestamp if self.message else self.session.created_at


@dataclass(frozen=True, slots=True)
class Found:
    hits: list[Hit]
    next: Position | None


@dataclass(frozen=True, slots=True)
class _Stream:
    """One kind of hit, newest first, and where its position stands after all of them."""

    hits: list[Hit]
    resume: Position


async def search(db: AsyncSession, user: User, text: str, limit: int, at: Position) -> Found:
    query = Query.parse(text)
    if not query.terms:  # nothing but spaces and punctuation: nothing to look for
        return Found([], None)
    messages = await _messages(db, user, query, limit + 1, at)
    titles = await _titles(db, user, query, limit + 1, at)
    hits: list[Hit] = []
    next_at = at
    while len(hits) < limit and (messages.hits or titles.hits):
        newest = max(
            (stream for stream in (messages, titles) if stream.hits),
            key=lambda stream: stream.hits[0].at,
        )
        hit = newest.hits.pop(0)
        hits.append(hit)
        if newest is messages:
            assert hit.message is not None
            next_at = replace(next_at, messages_below=hit.message.id)
        else:
            key = (hit.session.created_at, hit.session.session_id)
            next_at = replace(next_at, titles_after=key)
    if not messages.hits:  # every message hit taken: on from where the check stopped
        next_at = replace(next_at, messages_below=messages.resume.messages_below)
    if not titles.hits:
        next_at = replace(
            next_at,
            titles_after=titles.resume.titles_after,
            titles_done=titles.resume.titles_done,
        )
    return Found(hits, None if next_at.done else next_at)


async def _messages(db: AsyncSession, user: User, query: Query, want: int, at: Position) -> _Stream:
    """Up to `want` messages that match, below `at.messages_below`."""
    below = at.messages_below
    if below == 0:
        return _Stream([], at)
    repository = SearchRepository.from_session(db)
    ordered = await repository.rarest(user.id, query.terms)
    found: list[tuple[ChatMessage, ChatSession]] = []
    for _ in range(CHECK_ROUNDS):
        ids = await repository.message_ids(user.id, ordered, before=below, limit=want)
        rows = await repository.messages(user.id, ids)
        found += [(message, session) for message, session in rows if query.matches(message.content)]
        below = ids[-1] if len(ids) == want else 0
        if below == 0 or len(found) >= want:
            break
    if len(found) > want:
        found, below = found[:want], found[want - 1][0].id or 0
    shown = await described(db, [message for message, _ in found])
    hits = [
        Hit(session, public, _snippet(message.content, query.first_at(message.content)))
        for (message, session), public in zip(found, shown, strict=True)
    ]
    return _Stream(hits, replace(at, messages_below=below))


async def _titles(db: AsyncSession, user: User, query: Query, want: int, at: Position) -> _Stream:
    """Up to `want` sessions whose title matches, after `at.titles_after`."""
    if at.titles_done:
        return _Stream([], at)
    rows = await SearchRepository.from_session(db).titled(
        user.id, query, after=at.titles_after, limit=want
    )
    hits = [Hit(row, None, row.title) for row in rows if query.matches(row.title)]
    if len(rows) < want:
        return _Stream(hits, replace(at, titles_done=True))
    return _Stream(hits, replace(at, titles_after=(rows[-1].created_at, rows[-1].session_id)))


def _snippet(text: str, at: int) -> str:
    """Up to SNIPPET_LENGTH characters of `text` around position `at`, on one line."""
    start = max(0, at - SNIPPET_BEFORE)
    end = min(len(text), start + SNIPPET_LENGTH)
    piece = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")
