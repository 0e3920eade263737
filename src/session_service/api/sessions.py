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
    ForkRequest,
    MessagePage,
    SessionCreate,
    SessionDetail,
    SessionPage,
    SessionPublic,
    SessionUpdate,
)
from session_service.api.strict_json import StrictJSONRoute
from session_service.chat import branches, forks
from session_service.chat.sessions import create_session, delete_session, update_session
from session_service.db.repositories import SessionKey, SessionRepository
from session_service.deps import (
    CurrentUser,
    DbSession,
    MirrorDep,
    OwnedSession,
    RequestKey,
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
    key: RequestKey,
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
        new_id=key,
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
    archived: Annotated[
        bool, Query(description="`true`: your archived sessions only (by default, the others)")
    ] = False,
) -> SessionPage:
    """List your sessions (archived ones left out unless asked for), pinned first, then most
    recently updated."""
    after = decode_session_cursor(cursor) if cursor else None
    rows = await SessionRepository.from_session(db).list_for_user(
        user.id, archived=archived, limit=limit + 1, after=after
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_session_cursor(
            SessionKey(last.pinned, last.updated_at, last.session_id)
        )
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
    """Read a session with the latest messages of its active branch (oldest first); rebuilds
    a released agent."""
    await turns.agents.pooled(session, db)
    page = await branches.page(db, session, limit=messages_limit)
    return SessionDetail(
        **SessionPublic.of(session, agent_active=True).model_dump(),
        messages=page.messages,
        has_more_messages=page.has_more,
    )


@router.patch(
    "/{session_id}",
    summary="Rename a session, replace its context, switch branch, archive or pin it",
    responses={
        **SESSION_NOT_FOUND,
        **error(409, "A reply is being generated (switching branch)"),
        **error(422, "active_message_id is not a message of this session"),
    },
)
async def update(
    session: OwnedSession,
    body: SessionUpdate,
    user: CurrentUser,
    db: DbSession,
    turns: TurnsDep,
    mirror: MirrorDep,
) -> SessionPublic:
    """Rename a session (and its RAGFlow mirror), replace its context, switch its active
    branch, archive or pin it; `{}` changes nothing."""
    renamed = await update_session(
        db,
        user,
        session,
        title=body.title,
        context=body.context,
        active_message_id=body.active_message_id,
        archived=body.archived,
        pinned=body.pinned,
    )
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


@router.post(
    "/{session_id}/fork",
    summary="Fork a session: a new one holding a branch up to a message",
    status_code=status.HTTP_201_CREATED,
    responses={**SESSION_NOT_FOUND, **error(422, "message_id is not a message of this session")},
)
async def fork_session(
    session: OwnedSession,
    body: ForkRequest,
    user: CurrentUser,
    db: DbSession,
    mirror: MirrorDep,
    key: RequestKey,
) -> SessionPublic:
    """A new session of yours holding copies of the branch from its first message down to
    `message_id` (new ids), the context copied, with its own RAGFlow mirror; the source is
    unchanged. Its title is `title`, or the source's."""
    row = await forks.fork(db, user, mirror, session, body.message_id, body.title, key)
    return SessionPublic.of(row, agent_active=False)


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
    """Page through the messages of a session's active branch, newest page first, each page
    oldest first (toward the root)."""
    before_seq = decode_position_cursor(before, "before") if before else None
    page = await branches.page(db, session, limit=limit, before_seq=before_seq)
    older = page.oldest_seq if page.has_more else None
    next_cursor = encode_position_cursor(older) if older is not None else None
    return MessagePage(items=page.messages, next_cursor=next_cursor)
