"""The chat turn: post a message, get the stored question and the stored answer."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from session_service.api.schemas import ErrorBody, MessagePublic, TurnRequest, TurnResponse
from session_service.deps import CurrentUser, SessionIdPath, TurnsDep
from session_service.errors import PayloadTooLarge

router = APIRouter(prefix="/api/sessions", tags=["chat"])
MAX_CONTENT_CHARS = 32000


@router.post(
    "/{session_id}/messages",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": TurnResponse,
            "description": "A repeated client_message_id: the stored pair",
        },
        401: {"model": ErrorBody, "description": "Missing, invalid or expired token"},
        404: {"model": ErrorBody, "description": "Unknown session, or not yours"},
        409: {
            "model": ErrorBody,
            "description": "Another turn holds the session (if_busy, timeout)",
        },
        413: {"model": ErrorBody, "description": "content is over 32,000 characters"},
        502: {"model": ErrorBody, "description": "The LLM failed; your message is stored"},
        503: {"model": ErrorBody, "description": "The database is unreachable"},
        504: {"model": ErrorBody, "description": "The LLM timed out; your message is stored"},
    },
)
async def post_message(
    session_id: SessionIdPath,
    body: TurnRequest,
    user: CurrentUser,
    turns: TurnsDep,
    response: Response,
) -> TurnResponse:
    """Send a message and get the assistant's reply (one turn at a time per session)."""
    if len(body.content) > MAX_CONTENT_CHARS:
        raise PayloadTooLarge(
            f"content is {len(body.content)} characters; the limit is {MAX_CONTENT_CHARS}"
        )
    result = await turns.run(
        user,
        session_id,
        body.content,
        client_message_id=body.client_message_id,
        if_busy=body.if_busy,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return TurnResponse(
        user_message=MessagePublic.of(result.user_message),
        assistant_message=MessagePublic.of(result.assistant_message),
    )
