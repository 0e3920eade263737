"""The SQL of search: a message's terms written with its text and deleted with it, and the
messages and titles of one user that have them, newest first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, insert, literal, or_, select, union_all
from sqlalchemy.orm import aliased
from sqlmodel import col

from session_service.db.models import (
    MESSAGES,
    SEARCH_TERMS,
    SESSIONS,
    ChatMessage,
    ChatSession,
)
from session_service.db.repositories import Repository
from session_service.db.search_terms import Query, owner_key, terms

# Idempotent: indexing a message again (a turn's question, by each of its replies) adds nothing.
_INSERT_TERMS = (
    insert(SEARCH_TERMS)
    .prefix_with("IGNORE", dialect="mysql")
    .prefix_with("IGNORE", dialect="mariadb")
    .prefix_with("OR IGNORE", dialect="sqlite")
)
# Counting a term's messages stops here: enough to tell a rare term from a common one.
RARITY_CAP = 5000
# A long query's terms: those counted (the longest: longer ones tend to be rarer), and those
# looked up in the index; the text of a candidate is checked for all of them.
COUNTED_TERMS = 16
LOOKED_UP_TERMS = 6
# Deleting terms: the messages read at a time, and the terms a statement names at most
# (SQLite parses a chain of ORs that deep, up to 1,000).
FORGET_BATCH = 100
FORGET_TERMS = 200


class SearchRepository(Repository):
    async def index(self, user_id: str, texts: Iterable[tuple[int, str]]) -> None:
        """Write the terms of these messages (id, text) of `user_id`'s sessions (those it has
        already are left as they are)."""
        owner = owner_key(user_id)
        rows = [
            {"message_id": message_id, "term": term, "owner": owner}
            for message_id, text in texts
            for term in terms(text)
        ]
        if rows:
            await self.db.execute(_INSERT_TERMS, rows)

    async def forget(self, user_id: str, texts: Iterable[tuple[int, str]]) -> None:
        """Delete the terms of these messages (id, text as indexed) of `user_id`'s sessions:
        each one's rows found by its key, from its text."""
        which: dict[str, list[int]] = {}
        for message_id, text in texts:
            for term in terms(text):
                which.setdefault(term, []).append(message_id)
        found = list(which.items())
        for start in range(0, len(found), FORGET_TERMS):
            await self.db.execute(
                delete(SEARCH_TERMS).where(
                    SEARCH_TERMS.c.owner == owner_key(user_id),
                    or_(
                        *(
                            and_(SEARCH_TERMS.c.term == term, SEARCH_TERMS.c.message_id.in_(ids))
                            for term, ids in found[start : start + FORGET_TERMS]
                        )
                    ),
                )
            )

    async def forget_session(self, user_id: str, session_id: str) -> None:
        """Delete the terms of every message of the session (before its messages go)."""
        after = 0
        while texts := (
            await self.db.execute(
                select(MESSAGES.c.id, MESSAGES.c.content)
                .where(MESSAGES.c.session_id == session_id, MESSAGES.c.id > after)
                .order_by(MESSAGES.c.id)
                .limit(FORGET_BATCH)
            )
        ).all():
            await self.forget(user_id, [(message_id, text) for message_id, text in texts])
            after = texts[-1][0]

    async def rarest(self, user_id: str, wanted: set[str]) -> list[str]:
        """The few terms a search looks up (the caller checks the others in the text): those
        of fewest of the user's messages first, counted up to a cap, among the longest."""
        if len(wanted) < 2:
            return list(wanted)
        wanted = set(sorted(wanted, key=lambda term: (-len(term), term))[:COUNTED_TERMS])
        owner = owner_key(user_id)
        counted = [
            select(literal(term).label("term"), func.count().label("entries")).select_from(
                select(literal(1))
                .select_from(SEARCH_TERMS)
                .where(SEARCH_TERMS.c.owner == owner, SEARCH_TERMS.c.term == term)
                .limit(RARITY_CAP)
                .subquery()
            )
            for term in sorted(wanted)
        ]
        rows = await self.db.execute(union_all(*counted))
        counts: dict[str, int] = {term: entries for term, entries in rows}
        return sorted(wanted, key=lambda term: (counts.get(term, 0), term))[:LOOKED_UP_TERMS]

    async def message_ids(
        self, user_id: str, ordered: list[str], *, before: int, limit: int
    ) -> list[int]:
        """Ids below `before` of the user's messages that have every term, newest first: the
        first term's entries walked down the key, the others looked up by it."""
        first, owner = aliased(SEARCH_TERMS), owner_key(user_id)
        query = select(first.c.message_id).where(
            first.c.owner == owner,
            first.c.term == ordered[0],
            first.c.message_id < before,
        )
        for term in ordered[1:]:
            other = aliased(SEARCH_TERMS)
            query = query.where(
                exists().where(
                    other.c.owner == owner,
                    other.c.term == term,
                    other.c.message_id == first.c.message_id,
                )
            )
        rows = await self.db.scalars(query.order_by(first.c.message_id.desc()).limit(limit))
        return list(rows)

    async def messages(
        self, user_id: str, ids: Sequence[int]
    ) -> list[tuple[ChatMessage, ChatSession]]:
        """These messages, with their sessions, where the sessions are `user_id`'s."""
        if not ids:
            return []
        rows = await self.db.execute(
            select(ChatMessage, ChatSession)
            .join(ChatSession, col(ChatSession.session_id) == col(ChatMessage.session_id))
            .where(col(ChatMessage.id).in_(ids), col(ChatSession.user_id) == user_id)
            .order_by(col(ChatMessage.id).desc())
        )
        return [(message, session) for message, session in rows]

    async def titled(
        self,
        user_id: str,
        query: Query,
        *,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[ChatSession]:
        """The user's sessions whose title holds every word and CJK run of `query` (as a
        substring: the caller checks words as words), newest first, after `after`."""
        title = func.lower(SESSIONS.c.title)
        where = [SESSIONS.c.user_id == user_id]
        where += [title.contains(part, autoescape=True) for part in (*query.words, *query.runs)]
        if after is not None:
            at, session_id = after
            where.append(
                or_(
                    SESSIONS.c.created_at < at,
                    and_(SESSIONS.c.created_at == at, SESSIONS.c.session_id < session_id),
                )
            )
        rows = await self.db.scalars(
            select(ChatSession)
            .where(*where)
            .order_by(col(ChatSession.created_at).desc(), col(ChatSession.session_id).desc())
            .limit(limit)
        )
        return list(rows)
