"""Sessions: create, list, read, rename, delete, and page through messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from session_service.api.cursors import (
    decode_position_cursor,
    decode_session_cursor,
    encode_position_cursor,
    encode_session_cursor,
)
from session_service.api.responses import SESSION_NOT_FOUND, USER_ROUTE, error
from session_service.api.schemas import (
    MessagePage,
    SessionCreate,
    SessionDetail,
    SessionPage,
    SessionPublic,
    SessionUpdate,
)
from session_service.api.strict_json import StrictJSONRoute
from session_service.chat.public import MessagePublic
from session_service.chat.sessions import create_session, delete_session, update_session
from session_service.db.repositories import MessageRepository, SessionKey, SessionRepository
from session_service.deps import (
    CurrentUser,
    DbSession,
    MirrorDep,
    OwnedSession,
    TurnsDep,
    WorkersDep,
)

router = APIRouter(
    prefix="/api/sessions",
    tags=["sessions"],
    responses=USER_ROUTE,
    route_class=StrictJSONRoute,
)


@router.post(
    "",
    summary="Create a session",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SessionPublic, "description": "You already own a session with that id"},
        **error(
            409,
            "That session_id belongs to someone else, or is yours with another title or context",
        ),
    },
)
async def create(
    user: CurrentUser,
    db: DbSession,
    turns: TurnsDep,
    mirror: MirrorDep,
    response: Response,
    body: SessionCreate | None = None,
) -> SessionPublic:
    """Create a session (idempotent for a caller-chosen `session_id`) and its agent. Every
    field is optional: no body at all creates an untitled session."""
    body = body or SessionCreate()
    given = body.model_fields_set
    row, created = await create_session(
        db,
        user,
        mirror,
        session_id=body.session_id,
        title=body.title if "title" in given else None,
        context=body.context if "context" in given else None,
    )
    if created:
        turns.agents.add(row)
    else:
        response.status_code = status.HTTP_200_OK
    return SessionPublic.of(row, agent_active=turns.agents.has(row.session_id))


@router.get("", summary="List your sessions")
async def list_sessions(
    user: CurrentUser,
    db: DbSession,
    turns: TurnsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> SessionPage:
    """List your sessions, most recently updated first."""
    after = decode_session_cursor(cursor) if cursor else None
    rows = await SessionRepository.from_session(db).list_for_user(
        user.id, limit=limit + 1, after=after
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_session_cursor(SessionKey(last.updated_at, last.session_id))
    return SessionPage(
        items=[
            SessionPublic.of(row, agent_active=turns.agents.has(row.session_id)) for row in page
        ],
        next_cursor=next_cursor,
    )


@router.get(
    "/{session_id}", summary="Read a session and its latest messages", responses=SESSION_NOT_FOUND
)
async def read(
    session: OwnedSession,
    db: DbSession,
    turns: TurnsDep,
    messages_limit: Annotated[int, Query(ge=0, le=500)] = 50,
) -> SessionDetail:
    """Read a session with its latest messages (oldest first); rebuilds a released agent."""
    await turns.agents.pooled(session, db)
    messages, has_more = await MessageRepository.from_session(db).latest(
        session.session_id, limit=messages_limit
    )
    return SessionDetail(
        **SessionPublic.of(session, agent_active=True).model_dump(),
        messages=[MessagePublic.of(m) for m in messages],
        has_more_messages=has_more,
    )


@router.patch(
    "/{session_id}", summary="Rename a session or replace its context", responses=SESSION_NOT_FOUND
)
async def update(
    session: OwnedSession,
    body: SessionUpdate,
    user: CurrentUser,
    db: DbSession,
    turns: TurnsDep,
    mirror: MirrorDep,
) -> SessionPublic:
    """Rename a session (and its RAGFlow mirror) or replace its context; `{}` changes
    nothing."""
    renamed = await update_session(db, user, session, title=body.title, context=body.context)
    if renamed and mirror is not None:
        await mirror.rename(session)  # after the commit: a RAGFlow call holds no row lock
    return SessionPublic.of(session, agent_active=turns.agents.has(session.session_id))


@router.delete(
    "/{session_id}",
    summary="Delete a session",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=SESSION_NOT_FOUND,
)
async def delete(
    session: OwnedSession,
    user: CurrentUser,
    db: DbSession,
    workers: WorkersDep,
    mirror: MirrorDep,
) -> None:
    """Delete a session, its messages and its RAGFlow mirror, and release its agent."""
    await delete_session(db, user, session.session_id, mirror)  # committed
    await workers.release(session.session_id)  # in every worker of this replica
    if mirror is not None:
        mirror.wake()  # delete the mirror now


@router.get(
    "/{session_id}/messages",
    summary="Page through a session's messages",
    responses=SESSION_NOT_FOUND,
)
async def list_messages(
    session: OwnedSession,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> MessagePage:
    """Page through a session's messages, newest page first, each page oldest first."""
    before_seq = decode_position_cursor(before, "before") if before else None
    rows, has_more = await MessageRepository.from_session(db).latest(
        session.session_id, limit=limit, before_seq=before_seq
    )
    next_cursor = encode_position_cursor(rows[0].seq) if has_more and rows else None
    return MessagePage(items=[MessagePublic.of(m) for m in rows], next_cursor=next_cursor)
