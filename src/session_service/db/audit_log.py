"""The audit log: who did what to whose session, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from session_service.db.models import AuditEvent
from session_service.db.repositories import Repository


class AuditRepository(Repository):
    async def record(
        self,
        actor: str,
        action: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.db.add(
            AuditEvent(
                actor=actor,
                action=action,
                session_id=session_id,
                user_id=user_id,
                detail=detail or {},
            )
        )
        await self.db.flush()

    async def page(
        self,
        *,
        session_id: str | None,
        user_id: str | None,
        limit: int,
        before_id: int | None,
    ) -> Sequence[AuditEvent]:
        """Newest first."""
        query = select(AuditEvent)
        if session_id is not None:
            query = query.where(col(AuditEvent.session_id) == session_id)
        if user_id is not None:
            query = query.where(col(AuditEvent.user_id) == user_id)
        if before_id is not None:
            query = query.where(col(AuditEvent.id) < before_id)
        query = query.order_by(col(AuditEvent.id).desc()).limit(limit)
        return (await self.db.scalars(query)).all()
