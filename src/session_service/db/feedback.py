"""The statements of message feedback: one rating per assistant message, listed newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select

from session_service.db.models import FEEDBACK, MessageFeedback
from session_service.db.repositories import Repository


class FeedbackRepository(Repository):
    async def of(self, message_ids: Sequence[int]) -> dict[int, MessageFeedback]:
        if not message_ids:
            return {}
        rows = await self.db.scalars(
            select(MessageFeedback).where(FEEDBACK.c.message_id.in_(message_ids))
        )
        return {row.message_id: row for row in rows}

    async def set(self, feedback: MessageFeedback) -> MessageFeedback:
        """Rate a message, replacing its rating if it has one."""
        return await self.db.merge(feedback)

    async def remove(self, message_id: int) -> bool:
        """Whether there was a rating to remove."""
        result = await self.db.execute(delete(FEEDBACK).where(FEEDBACK.c.message_id == message_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def newest(
        self,
        *,
        limit: int,
        rating: str | None = None,
        user_id: str | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> Sequence[MessageFeedback]:
        """Ratings newest first (by time, then message id), older than `before`."""
        query = select(MessageFeedback)
        if rating is not None:
            query = query.where(FEEDBACK.c.rating == rating)
        if user_id is not None:
            query = query.where(FEEDBACK.c.user_id == user_id)
        if before is not None:
            at, message_id = before
            query = query.where(
                or_(
                    FEEDBACK.c.at < at,
                    (FEEDBACK.c.at == at) & (FEEDBACK.c.message_id < message_id),
                )
            )
        query = query.order_by(FEEDBACK.c.at.desc(), FEEDBACK.c.message_id.desc()).limit(limit)
        return (await self.db.scalars(query)).all()
