"""The message tree's statements. A branch is read from a message up toward the root, one row a
step (a recursive CTE over the primary key), so a page of it costs the same whatever the size
of the tree around it; a message's children are found by the (session, parent) index."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Integer, bindparam, func, literal, or_, select
from sqlalchemy.sql.selectable import CTE
from sqlmodel import col

from session_service.db.models import MESSAGES, ChatMessage
from session_service.db.repositories import Repository


def _up(limited: bool) -> CTE:
    """The branch ending at :leaf (of session :key), leaf first (`depth` 1), up to :limit rows."""
    anchor = select(MESSAGES.c.id, MESSAGES.c.parent_id, literal(1, Integer).label("depth")).where(
        MESSAGES.c.id == bindparam("leaf"), MESSAGES.c.session_id == bindparam("key")
    )
    branch = anchor.cte("branch", recursive=True)
    step = select(MESSAGES.c.id, MESSAGES.c.parent_id, branch.c.depth + 1).join(
        branch, MESSAGES.c.id == branch.c.parent_id
    )
    if limited:
        step = step.where(branch.c.depth < bindparam("limit"))
    return branch.union_all(step)


_BRANCH = _up(limited=True)
# Whole rows of a branch page, newest first.
_BRANCH_ROWS = (
    select(ChatMessage).join(_BRANCH, col(ChatMessage.id) == _BRANCH.c.id).order_by(_BRANCH.c.depth)
)
# What an agent is rebuilt from, without whole rows (a reply's metadata can be large).
_STATUS = MESSAGES.c.metadata["status"].as_string()
_BRANCH_TEXTS = (
    select(MESSAGES.c.id, MESSAGES.c.parent_id, MESSAGES.c.role, MESSAGES.c.content, _STATUS)
    .join(_BRANCH, MESSAGES.c.id == _BRANCH.c.id)
    .order_by(_BRANCH.c.depth)
)
_WHOLE_BRANCH = _up(limited=False)
_WHOLE_BRANCH_ROWS = (
    select(ChatMessage)
    .join(_WHOLE_BRANCH, col(ChatMessage.id) == _WHOLE_BRANCH.c.id)
    .order_by(_WHOLE_BRANCH.c.depth.desc())
)


def _below() -> CTE:
    """:top (of session :key) and every message under it."""
    anchor = select(MESSAGES.c.id).where(
        MESSAGES.c.id == bindparam("top"), MESSAGES.c.session_id == bindparam("key")
    )
    below = anchor.cte("below", recursive=True)
    step = select(MESSAGES.c.id).join(
        below,
        (MESSAGES.c.parent_id == below.c.id) & (MESSAGES.c.session_id == bindparam("key")),
    )
    return below.union_all(step)


_BELOW = _below()
_NEWEST_BELOW = select(func.max(_BELOW.c.id))

Text = tuple[int, int | None, str, str, str | None]  # id, parent_id, role, content, status


class TreeRepository(Repository):
    async def branch(self, session_id: str, leaf_id: int, *, limit: int) -> list[ChatMessage]:
        """Up to `limit` messages of the branch ending at `leaf_id`, oldest first."""
        rows = await self.db.scalars(
            _BRANCH_ROWS, {"leaf": leaf_id, "key": session_id, "limit": limit}
        )
        return list(reversed(rows.all()))

    async def whole_branch(self, session_id: str, leaf_id: int) -> Sequence[ChatMessage]:
        """The branch from the root to `leaf_id`, oldest first."""
        rows = await self.db.scalars(_WHOLE_BRANCH_ROWS, {"leaf": leaf_id, "key": session_id})
        return rows.all()

    async def branch_texts(self, session_id: str, leaf_id: int, *, limit: int) -> list[Text]:
        """(id, parent_id, role, content, status) of up to `limit` messages of the branch
        ending at `leaf_id`, newest first."""
        rows = await self.db.execute(
            _BRANCH_TEXTS, {"leaf": leaf_id, "key": session_id, "limit": limit}
        )
        return [(id_, parent, role, content, status) for id_, parent, role, content, status in rows]

    async def newest_below(self, session_id: str, message_id: int) -> int | None:
        """The most recently made message under `message_id` (itself if it has none): a leaf,
        since a message is always made after its parent. None if it is not the session's."""
        newest: int | None = await self.db.scalar(
            _NEWEST_BELOW, {"top": message_id, "key": session_id}
        )
        return newest

    async def children(
        self, session_id: str, parents: Collection[int | None]
    ) -> dict[int | None, list[int]]:
        """The ids of each parent's children (None: the session's first messages), oldest
        first."""
        found = await self.children_in([(session_id, parent) for parent in parents])
        return {parent: ids for (_, parent), ids in found.items()}

    async def children_in(
        self, parents: Collection[tuple[str, int | None]]
    ) -> dict[tuple[str, int | None], list[int]]:
        """`children` of parents in any sessions: keyed by (session, parent)."""
        found: dict[tuple[str, int | None], list[int]] = {key: [] for key in parents}
        if not found:
            return found
        ids = [parent for _, parent in found if parent is not None]
        roots = [session_id for session_id, parent in found if parent is None]
        where: list[Any] = [MESSAGES.c.parent_id.in_(ids)] if ids else []
        if roots:
            where.append(MESSAGES.c.parent_id.is_(None) & MESSAGES.c.session_id.in_(roots))
        rows = await self.db.execute(
            select(MESSAGES.c.session_id, MESSAGES.c.parent_id, MESSAGES.c.id)
            .where(MESSAGES.c.session_id.in_({key for key, _ in found}), or_(*where))
            .order_by(MESSAGES.c.id)
        )
        for session_id, parent, id_ in rows:
            found[session_id, parent].append(id_)
        return found

    async def first_reply(self, question: ChatMessage) -> ChatMessage | None:
        """The first answer made to `question` (later ones are regenerations)."""
        return await self.db.scalar(
            select(ChatMessage)
            .where(
                col(ChatMessage.session_id) == question.session_id,
                col(ChatMessage.parent_id) == question.id,
                col(ChatMessage.role) == "assistant",
            )
            .order_by(col(ChatMessage.id))
            .limit(1)
        )
