"""The vocabulary every endpoint uses: settings, database session, current user, owned session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, TypedDict

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from session_service.agents.pool import AgentPool
from session_service.agents.workers import Workers
from session_service.auth import DEV_USER, TokenVerifier, User
from session_service.chat.mirror import Mirror
from session_service.chat.sessions import owned_session
from session_service.chat.turn import ChatTurns
from session_service.config import Settings
from session_service.db.models import SESSION_ID_PATTERN, ChatSession
from session_service.db.types import MAX_POSITION
from session_service.errors import Forbidden, Unauthorized
from session_service.middleware import repeatable, request_key


class State(TypedDict):
    """What the lifespan holds for the life of the process (see main.lifespan)."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    pool: AgentPool
    workers: Workers
    turns: ChatTurns
    mirror: Mirror | None


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed on success, rolled back on any error.

    Used with `scope="function"` (DbSession): the commit runs when the endpoint returns, before
    the answer is sent, so no client holds a 2xx for a write that is not committed (FastAPI
    runs a request-scoped exit after the response).
    """
    factory: async_sessionmaker[AsyncSession] = request.state.session_factory
    async with factory() as session:
        yield session
        await session.commit()


_bearer = HTTPBearer(
    auto_error=False,
    description="JWT: HS256 with AUTH_JWT_SECRET, or RS256/ES256 from the identity provider "
    "at AUTH_JWKS_URL; not needed in development mode",
)


async def get_workers(request: Request) -> Workers:
    """The replica's worker processes, for the admin routes over every agent pool."""
    workers: Workers = request.state.workers
    return workers


async def get_request_key(request: Request) -> str:
    """The id of what the request creates, the same if it runs again (`request_key`)."""
    return request_key(request.scope)


async def mark_repeatable(request: Request) -> None:
    """The route's POST does the same when run again (`middleware.repeatable`)."""
    repeatable(request.scope)


async def get_turns(request: Request) -> ChatTurns:
    turns: ChatTurns = request.state.turns
    return turns


async def get_mirror(request: Request) -> Mirror | None:
    """RAGFlow's side of each session; None when RAGFlow is off."""
    mirror: Mirror | None = request.state.mirror
    return mirror


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]
WorkersDep = Annotated[Workers, Depends(get_workers)]
TurnsDep = Annotated[ChatTurns, Depends(get_turns)]
RequestKey = Annotated[str, Depends(get_request_key)]
MirrorDep = Annotated[Mirror | None, Depends(get_mirror)]


async def get_token_verifier(request: Request, settings: SettingsDep) -> TokenVerifier:
    """One per app, made on first use and kept on it: its JWKS client caches the identity
    provider's keys across requests."""
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        verifier = request.app.state.token_verifier = TokenVerifier.from_settings(settings)
    return verifier


async def get_current_user(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
) -> User:
    if settings.dev_mode:
        return DEV_USER
    if credentials is None:
        raise Unauthorized("missing bearer token")
    return await verifier.user(credentials.credentials)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("admin scope required")
    return user


AdminUser = Annotated[User, Depends(get_admin)]
SessionIdPath = Annotated[
    str, Path(pattern=SESSION_ID_PATTERN, description="The session's id", examples=["a1b2c3"])
]
MessageIdPath = Annotated[int, Path(ge=1, le=MAX_POSITION, description="An assistant message's id")]


async def get_owned_session(
    session_id: SessionIdPath, user: CurrentUser, db: DbSession
) -> ChatSession:
    """The caller's session, or 404 with the same detail whether it is unknown or another's."""
    return await owned_session(db, session_id, user)


OwnedSession = Annotated[ChatSession, Depends(get_owned_session)]
