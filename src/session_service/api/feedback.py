"""Feedback on answers: the owner's rating of an assistant message (PUT, DELETE), and the
admin's listing of every rating, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from session_service.api.cursors import decode_time_cursor, encode_time_cursor
from session_service.api.responses import ADMIN_ROUTE, SESSION_NOT_FOUND, USER_ROUTE, error
from session_service.api.strict_json import StrictJSONRoute
from session_service.chat import feedback
from session_service.chat.public import MessagePublic
from session_service.db.feedback import FeedbackRepository
from session_service.db.models import FEEDBACK_COMMENT_LENGTH, MessageFeedback, Rating
from session_service.deps import AdminUser, CurrentUser, DbSession, MessageIdPath, SessionIdPath

router = APIRouter(tags=["feedback"], route_class=StrictJSONRoute)
ON_AN_ANSWER = {
    **USER_ROUTE,
    **SESSION_NOT_FOUND,
    **error(404, "Session or message not found"),
    **error(422, "Not an assistant message, or a reply still being generated"),
}


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"rating": "down", "comment": "It missed the point"}]},
    )

    rating: Rating
    comment: str | None = Field(None, max_length=FEEDBACK_COMMENT_LENGTH)


class FeedbackItem(BaseModel):
    session_id: str
    user_id: str
    message_id: int
    rating: Rating
    comment: str | None
    at: datetime

    @classmethod
    def of(cls, row: MessageFeedback) -> FeedbackItem:
        return cls.model_validate(row, from_attributes=True)


class FeedbackPage(BaseModel):
    items: list[FeedbackItem]
    next_cursor: str | None


@router.put(
    "/api/sessions/{session_id}/messages/{message_id}/feedback",
    summary="Rate an answer up or down",
    responses=ON_AN_ANSWER,
)
async def rate(
    session_id: SessionIdPath,
    message_id: MessageIdPath,
    body: FeedbackRequest,
    user: CurrentUser,
    db: DbSession,
) -> MessagePublic:
    """Rate an assistant message (replacing your earlier rating of it); the message, with its
    `feedback`."""
    return await feedback.rate(db, user, session_id, message_id, body.rating, body.comment)


@router.delete(
    "/api/sessions/{session_id}/messages/{message_id}/feedback",
    summary="Remove your rating of an answer",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ON_AN_ANSWER,
)
async def unrate(
    session_id: SessionIdPath, message_id: MessageIdPath, user: CurrentUser, db: DbSession
) -> None:
    """Remove the rating of an assistant message; 204 whether it had one or not."""
    await feedback.unrate(db, user, session_id, message_id)


@router.get("/api/feedback", summary="List ratings (admin)", tags=["admin"], responses=ADMIN_ROUTE)
async def list_feedback(
    _admin: AdminUser,
    db: DbSession,
    rating: Rating | None = None,
    user_id: Annotated[str | None, Query(max_length=255, description="the rater")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> FeedbackPage:
    """Every rating, newest first; by rating or by user."""
    before = decode_time_cursor(cursor) if cursor else None
    rows = await FeedbackRepository.from_session(db).newest(
        limit=limit + 1, rating=rating, user_id=user_id, before=before
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_time_cursor(page[-1].at, page[-1].message_id)
    return FeedbackPage(items=[FeedbackItem.of(row) for row in page], next_cursor=next_cursor)
