"""The chat turn: post a message and get the stored answer, whole or streamed (SSE); and
follow a reply still being generated after a reload."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from session_service.api.responses import SESSION_NOT_FOUND, USER_ROUTE, error
from session_service.api.schemas import RegenerateRequest, TurnRequest, TurnResponse
from session_service.api.strict_json import StrictJSONRoute
from session_service.chat.generation import (
    DELTA,
    MESSAGE_END,
    MESSAGE_START,
    Event,
    Generation,
    TurnResult,
)
from session_service.chat.public import MessagePublic
from session_service.chat.questions import Regenerate
from session_service.deps import (
    CurrentUser,
    MessageIdPath,
    SessionIdPath,
    TurnsDep,
    mark_repeatable,
)
from session_service.errors import PayloadTooLarge

router = APIRouter(prefix="/api/sessions", tags=["chat"], route_class=StrictJSONRoute)
MAX_CONTENT_CHARS = 32000
HEARTBEAT_SECONDS = 15  # a comment line, so idle proxies do not cut a slow generation
SSE_DESCRIPTION = (
    "With `stream: true` or `Accept: text/event-stream`: `text/event-stream` with "
    "`message_start` `{user_message, assistant_message_id}`, `delta` `{text}` events whose "
    "texts concatenate to the reply, then `message_end` `{assistant_message}`; or `error` "
    "`{detail, code, status}` and the end. Each event has an `id` (for `Last-Event-ID`)."
)
COMMON_ERRORS = USER_ROUTE | SESSION_NOT_FOUND


@router.post(
    "/{session_id}/messages",
    summary="Send a message: a chat turn, answered whole or streamed",
    response_model=TurnResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": TurnResponse,
            "description": "A repeated client_message_id: the stored pair",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        201: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **COMMON_ERRORS,
        **error(409, "Another turn holds the session (if_busy, timeout)"),
        **error(413, "content is over 32,000 characters"),
        **error(502, "The LLM failed; your message is stored"),
        **error(504, "The LLM timed out; your message is stored"),
    },
    description=SSE_DESCRIPTION,
)
async def post_message(
    session_id: SessionIdPath,
    body: TurnRequest,
    user: CurrentUser,
    turns: TurnsDep,
    request: Request,
    response: Response,
) -> Any:
    """Send a message and get the assistant's reply (one turn at a time per session)."""
    if len(body.content) > MAX_CONTENT_CHARS:
        raise PayloadTooLarge(
            f"content is {len(body.content)} characters; the limit is {MAX_CONTENT_CHARS}"
        )
    stream = body.stream or "text/event-stream" in request.headers.get("accept", "")
    started = await turns.begin(user, session_id, body.step(), if_busy=body.if_busy, stream=stream)
    return await _answer(started, stream, response)


@router.post(
    "/{session_id}/messages/{message_id}/regenerate",
    summary="Regenerate an answer: a new one to the same question, beside the old",
    response_model=TurnResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **COMMON_ERRORS,
        **error(404, "Session or message not found"),
        **error(409, "Another turn holds the session (if_busy, timeout)"),
        **error(422, "Not an assistant message, or a reply still being generated"),
        **error(502, "The LLM failed"),
        **error(504, "The LLM timed out"),
    },
    description=SSE_DESCRIPTION,
)
async def regenerate(
    session_id: SessionIdPath,
    message_id: MessageIdPath,
    user: CurrentUser,
    turns: TurnsDep,
    request: Request,
    response: Response,
    body: RegenerateRequest | None = None,
) -> Any:
    """Answer the question of an assistant message again, from the branch up to that
    question; the new answer becomes the active leaf and the old one stays as its sibling.
    Answers as a turn does (`user_message` is the existing question)."""
    body = body or RegenerateRequest()
    stream = body.stream or "text/event-stream" in request.headers.get("accept", "")
    started = await turns.begin(
        user, session_id, Regenerate(message_id), if_busy=body.if_busy, stream=stream
    )
    return await _answer(started, stream, response)


@router.post(
    "/{session_id}/messages/{message_id}/stop",
    summary="Stop a reply, keeping what was generated",
    dependencies=[Depends(mark_repeatable)],
    responses={
        **COMMON_ERRORS,
        **error(404, "Session or message not found"),
        **error(422, "Not an assistant message"),
        **error(503, "The replica generating the reply has not stored it in time"),
    },
)
async def stop(
    session_id: SessionIdPath, message_id: MessageIdPath, user: CurrentUser, turns: TurnsDep
) -> MessagePublic:
    """Stop a reply being generated, on this replica or any other: its LLM request is closed
    and what was generated is stored, `metadata.status: "stopped"`; its streams end with
    `message_end`. A reply already stored is given as it is."""
    return await turns.stop(user, session_id, message_id)


async def _answer(started: Generation | TurnResult, stream: bool, response: Response) -> Any:
    """A turn's answer: its events as they come, or the stored pair once stored."""
    if isinstance(started, Generation):
        if stream:
            return _sse(started.follow(), status.HTTP_201_CREATED)
        result = await started.wait()
    else:
        result = started
        if stream:
            return _sse(_replayed(result), status.HTTP_200_OK)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return TurnResponse(
        user_message=result.user_message, assistant_message=result.assistant_message
    )


@router.get(
    "/{session_id}/messages/{message_id}/stream",
    summary="Follow a reply (rejoin a stream after a reload)",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **COMMON_ERRORS,
    },
)
async def follow_reply(
    session_id: SessionIdPath,
    message_id: MessageIdPath,
    user: CurrentUser,
    turns: TurnsDep,
    last_event_id: Annotated[str | None, Header(description="the last event id you got")] = None,
) -> EventSourceResponse:
    """Follow a reply: the rest of one still being generated on this replica, from after
    `Last-Event-ID`; or, once stored, `message_end` with the whole message at once."""
    after = _event_number(last_event_id) if last_event_id else None
    events = await turns.follow(user, session_id, message_id, after)
    return _sse(events, status.HTTP_200_OK)


async def _replayed(result: TurnResult) -> AsyncIterator[Event]:
    """The stored pair of a repeated client_message_id, as the stream that made it."""
    question, reply = result.user_message, result.assistant_message
    for event in (
        Event(1, MESSAGE_START, {"user_message": question, "assistant_message_id": reply.id}),
        Event(2, DELTA, {"text": reply.content}),
        Event(3, MESSAGE_END, {"assistant_message": reply}),
    ):
        yield event


def _sse(events: AsyncIterator[Event], status_code: int) -> EventSourceResponse:
    async def encoded() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(
                id=str(event.id), event=event.name, data=json.dumps(_public(event.data.items()))
            )

    return EventSourceResponse(encoded(), status_code=status_code, ping=HEARTBEAT_SECONDS)


def _public(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {
        key: value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        for key, value in items
    }


def _event_number(last_event_id: str | None) -> int:
    try:
        return int(last_event_id or 0)
    except ValueError:
        return 0
