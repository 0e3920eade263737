"""A session's life in the persistent layer: create (idempotently), change and delete.

Each write commits before it returns, so that what the caller does next (answer, release the
agent, wake the mirror's deletions) happens after the change is durable."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from session_service.auth import User
from session_service.chat import branches
from session_service.chat.mirror import Mirror
from session_service.db.audit_log import AuditRepository
from session_service.db.models import ChatSession
from session_service.db.repositories import SessionRepository
from session_service.db.search import SearchRepository
from session_service.errors import Conflict, SessionNotFound

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New chat"


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
    new_id: str,
    title: str | None,
    context: dict[str, Any] | None,
) -> tuple[ChatSession, bool]:
    """Create the session (and its RAGFlow mirror) and commit it, or return the caller's
    existing one when this repeats its creation.

    `title` and `context` are None when not given; `session_id` None is `new_id`, the
    request's own (`middleware.request_key`: stored by an earlier run of it, its insert fails
    and it is returned as created). Returns the row and whether it was created. Someone
    else's id, or one of the caller's own with another title or context, is a conflict.
    When RAGFlow cannot make the mirror now, the session is created without one and the
    first turn makes it.
    """
    sessions = SessionRepository.from_session(db)
    if session_id is not None:
        existing = await sessions.get(session_id)
        if existing is not None:
            return _repeated(existing, user, title, context), False
    titled = title is not None  # else its first turn titles it (chat.titles)
    title = DEFAULT_TITLE if title is None else title
    mirror_id = await mirror.create(title, user.id) if mirror is not None else None
    row = ChatSession(
        session_id=session_id or new_id,
        user_id=user.id,
        title=title,
        titled=titled,
        context=context or {},
        ragflow_session_id=mirror_id,
        ragflow_chat_id=mirror.chat_id if mirror_id is not None and mirror is not None else None,
    )
    try:
        await sessions.insert(row)
    except IntegrityError:
        # A concurrent create with the same id won the race: answer as if we came second (or
        # an earlier run of this request, its commit in doubt, made it: as if we came first).
        await db.rollback()
        if mirror is not None and mirror_id is not None:
            await mirror.forget(db, mirror_id, mirror.chat_id)
            await db.commit()
            mirror.wake()
        existing = await sessions.get(row.session_id)
        if existing is None:
            raise
        return _repeated(existing, user, title, context), session_id is None
    await AuditRepository.from_session(db).record(
        user.id,
        "session.created",
        session_id=row.session_id,
        user_id=user.id,
        detail={"title": title},
    )
    await db.commit()
    log.info("session created session_id=%s user_id=%s", row.session_id, user.id)
    return row, True


async def update_session(
    db: AsyncSession,
    user: User,
    row: ChatSession,
    *,
    title: str | None,
    context: dict[str, Any] | None,
    active_message_id: int | None = None,
    archived: bool | None = None,
    pinned: bool | None = None,
) -> bool:
    """Rename the session, replace its context, switch its active branch (to the newest leaf
    below `active_message_id`), archive or pin it; say so in the audit log, and commit;
    whether it was renamed (its RAGFlow mirror follows). A value equal to the stored one is no
    change. SessionNotFound if a concurrent delete came first."""
    sessions = SessionRepository.from_session(db)
    if await sessions.lock(row.session_id) is None:  # refreshes `row`, as it is now
        raise SessionNotFound()
    title = title if title != row.title else None
    context = context if not _same_json(context, row.context) else None
    leaf = None
    if active_message_id is not None:
        leaf = await branches.switch_target(db, row, active_message_id)
        leaf = leaf if leaf != row.active_message_id else None
    archived = archived if archived != row.archived else None
    pinned = pinned if pinned != row.pinned else None
    changes: list[tuple[str, dict[str, Any]]] = [
        (action, detail)
        for action, detail, changed in (
            ("session.archived", {"archived": archived}, archived is not None),
            ("session.pinned", {"pinned": pinned}, pinned is not None),
            (
                "session.branch_switched",
                {"from": row.active_message_id, "to": leaf},
                leaf is not None,
            ),
            ("session.renamed", {"from": row.title, "to": title}, title is not None),
            ("session.context_replaced", {}, context is not None),
        )
        if changed
    ]
    if not changes:
        return False
    audit = AuditRepository.from_session(db)
    for action, detail in changes:
        await audit.record(
            user.id, action, session_id=row.session_id, user_id=row.user_id, detail=detail
        )
    await sessions.update(
        row,
        title=title,
        context=context,
        active_message_id=leaf,
        archived=archived,
        pinned=pinned,
    )
    await db.commit()
    return title is not None


def _same_json(given: dict[str, Any] | None, stored: dict[str, Any]) -> bool:
    """The same JSON document: Python's == takes `true` for `1` and `1.0` for `1`."""
    if given is None:
        return True
    return json.dumps(given, sort_keys=True) == json.dumps(stored, sort_keys=True)


def _repeated(
    row: ChatSession, user: User, title: str | None, context: dict[str, Any] | None
) -> ChatSession:
    """The caller's session, when a create repeats with nothing that differs from it."""
    if row.user_id != user.id:
        raise Conflict("session_id is already taken")
    if (title is not None and title != row.title) or (
        context is not None and not _same_json(context, row.context)
    ):
        raise Conflict(
            "you already have a session with this session_id and another title or context; "
            "PATCH it to change them"
        )
    return row


async def delete_session(
    db: AsyncSession, user: User, session_id: str, mirror: Mirror | None
) -> None:
    """Delete the session's rows and queue its mirror's deletion, all in one transaction, and
    commit it; SessionNotFound if a concurrent delete came first."""
    sessions = SessionRepository.from_session(db)
    row = await sessions.lock(session_id)  # as it is now: a turn may have just added to it
    if row is None:
        raise SessionNotFound()
    await SearchRepository.from_session(db).forget_session(row.user_id, session_id)
    await sessions.delete(session_id)
    await AuditRepository.from_session(db).record(
        user.id,
        "session.deleted",
        session_id=row.session_id,
        user_id=row.user_id,
        detail={"messages": row.message_count, "title": row.title},
    )
    if row.ragflow_session_id:
        if mirror is not None:
            await mirror.forget(db, row.ragflow_session_id, row.ragflow_chat_id)
        else:
            log.warning(
                "RAGFlow is off: its session %s (of session %s) is left there",
                row.ragflow_session_id,
                row.session_id,
            )
    await db.commit()
    log.info(
        "session deleted session_id=%s user_id=%s messages=%d",
        row.session_id,
        row.user_id,
        row.message_count,
    )
