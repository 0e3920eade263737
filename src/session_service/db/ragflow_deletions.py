"""Deletions of RAGFlow sessions still to be made (the mirror retries them until RAGFlow
answers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlmodel import col

from session_service.db.models import RagflowDeletion
from session_service.db.repositories import Repository


class RagflowDeletionRepository(Repository):
    async def add(self, ragflow_session_id: str, chat_id: str) -> None:
        self.db.add(RagflowDeletion(ragflow_session_id=ragflow_session_id, chat_id=chat_id))
        await self.db.flush()

    async def due(self, now: datetime, limit: int) -> Sequence[RagflowDeletion]:
        return (
            await self.db.scalars(
                select(RagflowDeletion)
                .where(col(RagflowDeletion.next_attempt_at) <= now)
                .order_by(col(RagflowDeletion.next_attempt_at))
                .limit(limit)
            )
        ).all()

    async def done(self, deletion_id: int) -> None:
        await self.db.execute(delete(RagflowDeletion).where(col(RagflowDeletion.id) == deletion_id))

    async def postpone(self, deletion_id: int, *, until: datetime, error: str) -> None:
        await self.db.execute(
            update(RagflowDeletion)
            .where(col(RagflowDeletion.id) == deletion_id)
            .values(
                attempts=col(RagflowDeletion.attempts) + 1,
                next_attempt_at=until,
                last_error=error[:500],
            )
        )
