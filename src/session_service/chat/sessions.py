"""A session's life in the persistent layer: create (idempotently) and delete."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from session_service.auth import User
from session_service.chat.mirror import Mirror
from session_service.db.models import ChatSession
from session_service.db.repositories import AuditRepository, SessionRepository
from session_service.errors import Conflict, SessionNotFound

log = logging.getLogger(__name__)


async def owned_session(db: AsyncSession, session_id: str, user: User) -> ChatSession:
    """The caller's session; SessionNotFound whether it is unknown or someone else's."""
    row = await SessionRepository.from_session(db).get(session_id)
    if row is None or row.user_id != user.id:
        raise SessionNotFound()
    return row


async def create_session(
    db: AsyncSession,
    user: User,
    mirror: Mirror | None,
    *,
    session_id: str | None,
    title: str,
    context: dict[str, Any],
) -> tuple[ChatSession, bool]:
    """Create the session (and its RAGFlow mirror), or return the caller's existing one.

    Returns the row and whether it was created. Someone else's id is a conflict. When RAGFlow
    cannot make the mirror now, the session is created without one and the first turn makes it.
    """
    sessions = SessionRepository.from_session(db)
    if session_id is not None:
        existing = await sessions.get(session_id)
        if existing is not None:
            return _owned(existing, user), False
    mirror_id = await mirror.create(title, user.id) if mirror is not None else None
    row = ChatSession(
        session_id=session_id or uuid.uuid4().hex,
        user_id=user.id,
        title=title,
        context=context,
        ragflow_session_id=mirror_id,
    )
    try:
        await sessions.insert(row)
    except IntegrityError:
        # A concurrent create with the same id won the race: answer as if we came second.
        await db.rollback()
        if mirror is not None and mirror_id is not None:
            await mirror.forget(db, mirror_id)
        existing = await sessions.get(row.session_id)
        if existing is None:
            raise
        return _owned(existing, user), False
    await AuditRepository.from_session(db).record(
        user.id,
        "session.created",
        session_id=row.session_id,
        user_id=user.id,
        detail={"title": title},
    )
    log.info("session created session_id=%s user_id=%s", row.session_id, user.id)
    return row, True


async def update_session(
    db: AsyncSession,
    user: User,
    row: ChatSession,
    *,
    title: str | None,
    context: dict[str, Any] | None,
) -> ChatSession:
    """Rename the session or replace its context, and say so in the audit log."""
    audit = AuditRepository.from_session(db)
    if title is not None and title != row.title:
        await audit.record(
            user.id,
            "session.renamed",
            session_id=row.session_id,
            user_id=row.user_id,
            detail={"from": row.title, "to": title},
        )
    if context is not None:
        await audit.record(
            user.id, "session.context_replaced", session_id=row.session_id, user_id=row.user_id
        )
    return await SessionRepository.from_session(db).update(row, title=title, context=context)


def _owned(row: ChatSession, user: User) -> ChatSession:
    if row.user_id != user.id:
        raise Conflict("session_id is already taken")
    return row


async def delete_session(
    db: AsyncSession, user: User, row: ChatSession, mirror: Mirror | None
) -> None:
    """Delete the session's rows and queue its mirror's deletion, all in one transaction."""
    await SessionRepository.from_session(db).delete(row.session_id)
    await AuditRepository.from_session(db).record(
        user.id,
        "session.deleted",
        session_id=row.session_id,
        user_id=row.user_id,
        detail={"messages": row.message_count, "title": row.title},
    )
    if row.ragflow_session_id:
        if mirror is not None:
            await mirror.forget(db, row.ragflow_session_id)
        else:
            log.warning(
                "RAGFlow is off: its session %s (of session %s) is left there",
                row.ragflow_session_id,
                row.session_id,
            )
    log.info(
        "session deleted session_id=%s user_id=%s messages=%d",
        row.session_id,
        row.user_id,
        row.message_count,
    )
