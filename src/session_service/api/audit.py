"""GET /api/audit: the audit log, for admins, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from session_service.api.cursors import decode_position_cursor, encode_position_cursor
from session_service.api.responses import ADMIN_ROUTE
from session_service.db.audit_log import AuditRepository
from session_service.db.models import SESSION_ID_PATTERN, AuditEvent
from session_service.deps import AdminUser, DbSession


class AuditItem(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    session_id: str | None
    user_id: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEvent) -> AuditItem:
        return cls.model_validate(row, from_attributes=True)


class AuditPage(BaseModel):
    items: list[AuditItem]
    next_cursor: str | None


router = APIRouter(
    prefix="/api/audit",
    tags=["admin"],
    responses=ADMIN_ROUTE,
)


@router.get("", summary="Read the audit log (admin)")
async def audit_log(
    _admin: AdminUser,
    db: DbSession,
    session_id: Annotated[str | None, Query(pattern=SESSION_ID_PATTERN)] = None,
    user_id: Annotated[str | None, Query(max_length=255, description="the session's owner")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> AuditPage:
    """Who did what to which session: created, renamed, deleted, agents released by hand.
    Events of deleted sessions stay."""
    before = decode_position_cursor(cursor, "cursor") if cursor else None
    rows = await AuditRepository.from_session(db).page(
        session_id=session_id, user_id=user_id, limit=limit + 1, before_id=before
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit and page[-1].id is not None:
        next_cursor = encode_position_cursor(page[-1].id)
    return AuditPage(items=[AuditItem.of(row) for row in page], next_cursor=next_cursor)
