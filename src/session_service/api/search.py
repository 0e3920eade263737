"""Search across the caller's sessions: titles and messages of every branch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from session_service.api.cursors import decode_search_cursor, encode_search_cursor
from session_service.api.responses import USER_ROUTE
from session_service.api.schemas import SessionPublic
from session_service.api.strict_json import StrictJSONRoute
from session_service.chat import search as searching
from session_service.chat.public import MessagePublic
from session_service.deps import CurrentUser, DbSession, TurnsDep

router = APIRouter(tags=["search"], route_class=StrictJSONRoute)


class SearchHit(BaseModel):
    session: SessionPublic
    message: MessagePublic | None = Field(description="The matching message; null: the title")
    snippet: str = Field(description="The text around the match, on one line")


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None = Field(
        description="A page may hold fewer items than `limit` and still go on: follow "
        "next_cursor until it is null"
    )


@router.get(
    "/api/search", summary="Search your sessions' titles and messages", responses=USER_ROUTE
)
async def search(
    user: CurrentUser,
    db: DbSession,
    turns: TurnsDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=searching.QUERY_LENGTH,
            description="Words (case-insensitive), or Chinese, Japanese or Korean text (as a "
            "substring): a hit has all of them",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> SearchPage:
    """Titles and messages (of every branch) of your sessions that match `q`, newest first."""
    at = decode_search_cursor(cursor) if cursor else searching.Position()
    found = await searching.search(db, user, q, limit, at)
    return SearchPage(
        items=[
            SearchHit(
                session=SessionPublic.of(
                    hit.session, agent_active=turns.agents.has(hit.session.session_id)
                ),
                message=hit.message,
                snippet=hit.snippet,
            )
            for hit in found.hits
        ],
        next_cursor=None if found.next is None else encode_search_cursor(found.next),
    )
