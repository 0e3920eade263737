"""Feedback on answers: the owner rates an assistant message up or down, with a comment,
changes or removes the rating; each change is audited and counted by rating."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from session_service import metrics
from session_service.auth import User
from session_service.chat.public import MessagePublic, described
from session_service.chat.sessions import owned_session
from session_service.db.audit_log import AuditRepository
from session_service.db.feedback import FeedbackRepository
from session_service.db.models import ChatMessage, MessageFeedback, MessageStatus, Rating
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.types import utcnow
from session_service.errors import InvalidInput, NotFound, SessionNotFound


async def rate(
    db: AsyncSession,
    user: User,
    session_id: str,
    message_id: int,
    rating: Rating,
    comment: str | None,
) -> MessagePublic:
    """Set the answer's rating (replacing one it had) and commit; the message as it is now."""
    message = await _answer(db, user, session_id, message_id)
    await FeedbackRepository.from_session(db).set(
        MessageFeedback(
            message_id=message_id,
            session_id=session_id,
            user_id=user.id,
            rating=rating,
            comment=comment,
            at=utcnow(),
        )
    )
    detail = {"message_id": message_id, "rating": rating, "comment": comment}
    await AuditRepository.from_session(db).record(
        user.id, "feedback_set", session_id=session_id, user_id=user.id, detail=detail
    )
    await db.commit()
    metrics.FEEDBACK.labels(rating).inc()
    (shown,) = await described(db, [message])
    return shown


async def unrate(db: AsyncSession, user: User, session_id: str, message_id: int) -> None:
    """Remove the answer's rating, if it has one, and commit."""
    await _answer(db, user, session_id, message_id)
    if await FeedbackRepository.from_session(db).remove(message_id):
        await AuditRepository.from_session(db).record(
            user.id,
            "feedback_removed",
            session_id=session_id,
            user_id=user.id,
            detail={"message_id": message_id},
        )
    await db.commit()


async def _answer(db: AsyncSession, user: User, session_id: str, message_id: int) -> ChatMessage:
    """The caller's answer `message_id`, its session's row locked (a delete may race)."""
    await owned_session(db, session_id, user)
    if await SessionRepository.from_session(db).lock(session_id) is None:
        raise SessionNotFound()
    message = await MessageRepository.from_session(db).get(message_id)
    if message is None or message.session_id != session_id:
        raise NotFound("Message not found")
    if message.role != "assistant":
        raise InvalidInput(f"message {message_id} is not an assistant message: rate answers")
    if message.meta.get("status") == MessageStatus.STREAMING:
        raise InvalidInput(f"message {message_id} is a reply still being generated")
    return message
