"""The active branch: read a page of it, and switch to another."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from session_service.chat.public import MessagePublic, described
from session_service.db.models import ChatSession
from session_service.db.repositories import MessageRepository
from session_service.db.tree import TreeRepository
from session_service.errors import InvalidInput, SessionBusy


class Page(NamedTuple):
    messages: list[MessagePublic]
    has_more: bool  # older messages on the branch
    oldest_seq: int | None  # the number of the oldest given: the next page's `before_seq`


async def page(
    db: AsyncSession, row: ChatSession, *, limit: int, before_seq: int | None = None
) -> Page:
    """Up to `limit` messages of the active branch, oldest first, ending at its leaf or (with
    `before_seq`, a message's number) just above that message."""
    leaf = row.active_message_id
    if before_seq is not None:
        below = await MessageRepository.from_session(db).at_seq(row.session_id, before_seq)
        leaf = None if below is None else below.parent_id
    if leaf is None:
        return Page([], False, None)
    rows = await TreeRepository.from_session(db).branch(row.session_id, leaf, limit=limit + 1)
    shown = rows[len(rows) - limit :] if limit else []
    return Page(await described(db, shown), len(rows) > limit, shown[0].seq if shown else None)


async def switch_target(db: AsyncSession, row: ChatSession, message_id: int) -> int:
    """The leaf a switch to `message_id` makes active: the newest below it. Read in the
    caller's transaction, which has locked the session's row; not while a reply is being
    generated (409)."""
    if row.generating_message_id is not None:
        raise SessionBusy("a reply is being generated in this session; switch once it is stored")
    leaf = await TreeRepository.from_session(db).newest_below(row.session_id, message_id)
    if leaf is None:
        raise InvalidInput(f"message {message_id} is not in this session")
    return leaf
