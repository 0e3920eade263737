"""Forking a conversation: a new session of the caller's, holding copies of a branch from its
first message down to a chosen one, with its context and a RAGFlow mirror of its own. The
source is not changed."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from session_service.auth import User
from session_service.chat.mirror import Mirror
from session_service.db.audit_log import AuditRepository
from session_service.db.models import ChatMessage, ChatSession, MessageStatus
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.search import SearchRepository
from session_service.db.tree import TreeRepository
from session_service.db.types import utcnow
from session_service.errors import InvalidInput

log = logging.getLogger(__name__)


async def fork(
    db: AsyncSession,
    user: User,
    mirror: Mirror | None,
    source: ChatSession,
    message_id: int,
    title: str | None,
    new_id: str,
) -> ChatSession:
    """The new session `new_id`, committed: the branch root → `message_id` copied in order
    (new ids; the same roles, contents, metadata and timestamps), its last copy the active
    leaf. Stored already (by an earlier run of the request: `middleware.request_key`), its
    insert fails and it is returned as it is."""
    tree = TreeRepository.from_session(db)
    branch = list(await tree.whole_branch(source.session_id, message_id))
    if not branch:
        raise InvalidInput(f"message {message_id} is not in this session")
    if branch[-1].meta.get("status") == MessageStatus.STREAMING:
        raise InvalidInput(f"message {message_id} is a reply still being generated")
    title = source.title if title is None else title
    mirror_id = await mirror.create(title, user.id) if mirror is not None else None
    try:
        row = await _copy(db, user, source, branch, title, mirror, mirror_id, new_id)
    except BaseException as exc:
        await db.rollback()
        if mirror is not None and mirror_id is not None:  # made for nothing: delete it
            await mirror.forget(db, mirror_id, mirror.chat_id)
            await db.commit()
            mirror.wake()
        sessions = SessionRepository.from_session(db)
        done = await sessions.get(new_id) if isinstance(exc, IntegrityError) else None
        if done is None or done.user_id != user.id:
            raise
        return done  # made by an earlier run of the request
    log.info("session forked session_id=%s from=%s", row.session_id, source.session_id)
    return row


async def _copy(
    db: AsyncSession,
    user: User,
    source: ChatSession,
    branch: list[ChatMessage],
    title: str,
    mirror: Mirror | None,
    mirror_id: str | None,
    new_id: str,
) -> ChatSession:
    sessions = SessionRepository.from_session(db)
    row = await sessions.insert(
        ChatSession(
            session_id=new_id,
            user_id=user.id,
            title=title,
            context=dict(source.context),
            ragflow_session_id=mirror_id,
            ragflow_chat_id=mirror.chat_id if mirror is not None and mirror_id else None,
        )
    )
    messages = MessageRepository.from_session(db)
    parent, copies = None, []
    for seq, message in enumerate(branch, start=1):
        copy = await messages.insert(
            ChatMessage(
                session_id=row.session_id,
                seq=seq,
                parent_id=parent,
                role=message.role,
                content=message.content,
                timestamp=message.timestamp,
                meta=message.meta,
            )
        )
        parent = copy.id
        copies.append((parent or 0, copy.content))
    await SearchRepository.from_session(db).index(user.id, copies)
    await sessions.record_messages(row.session_id, len(branch), utcnow())
    await sessions.set_active(row.session_id, parent)
    await AuditRepository.from_session(db).record(
        user.id,
        "session.forked",
        session_id=row.session_id,
        user_id=user.id,
        detail={"from": source.session_id, "message_id": branch[-1].id, "title": title},
    )
    await db.commit()
    await db.refresh(row)
    return row
