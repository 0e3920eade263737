"""A message as clients see it: in answers, and in a reply's events as they are published.
Besides its row, it shows its place in the tree (`sibling_ids`) and its feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from session_service.db.feedback import FeedbackRepository
from session_service.db.models import ChatMessage, MessageFeedback, Rating
from session_service.db.tree import TreeRepository


class FeedbackPublic(BaseModel):
    rating: Rating
    comment: str | None
    at: datetime

    @classmethod
    def of(cls, row: MessageFeedback) -> FeedbackPublic:
        return cls(rating=Rating(row.rating), comment=row.comment, at=row.at)


class MessagePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "session_id": "trip-2026",
                    "parent_id": 41,
                    "sibling_ids": [42, 57],
                    "role": "assistant",
                    "content": "The Alfama district, for a start.",
                    "timestamp": "2026-11-24T10:00:00.123456Z",
                    "metadata": {
                        "model": "gpt-4o-mini",
                        "usage": {"input_tokens": 120, "output_tokens": 9, "total_tokens": 129},
                        "grounding": "ragflow_chat",
                        "references": [
                            {
                                "document_name": "lisbon.pdf",
                                "document_id": "doc-1",
                                "chunk_id": "c-7",
                                "dataset_id": "ds-1",
                                "similarity": 0.82,
                            }
                        ],
                    },
                    "feedback": {"rating": "up", "comment": None, "at": "2026-11-24T10:01:00Z"},
                }
            ]
        }
    )

    id: int
    session_id: str
    parent_id: int | None = Field(description="The message before it on its branch")
    sibling_ids: list[int] = Field(
        description="The messages sharing its parent, oldest first, itself included"
    )
    role: Literal["user", "assistant", "system"]
    content: str
    timestamp: datetime
    metadata: dict[str, Any]
    feedback: FeedbackPublic | None = None

    @classmethod
    def of(
        cls,
        row: ChatMessage,
        siblings: list[int] | None = None,
        feedback: MessageFeedback | None = None,
    ) -> MessagePublic:
        """`siblings` defaults to the message alone (a new message on a leaf)."""
        assert row.id is not None
        return cls(
            id=row.id,
            session_id=row.session_id,
            parent_id=row.parent_id,
            sibling_ids=siblings if siblings is not None else [row.id],
            role=row.role,
            content=row.content,
            timestamp=row.timestamp,
            metadata=row.meta,  # the row's `meta`: SQLAlchemy keeps `metadata` for itself
            feedback=None if feedback is None else FeedbackPublic.of(feedback),
        )


async def described(db: AsyncSession, rows: list[ChatMessage]) -> list[MessagePublic]:
    """Messages (of any sessions) as clients see them: two reads for the lot, whatever their
    number (their parents' children, their feedback)."""
    if not rows:
        return []
    children = await TreeRepository.from_session(db).children_in(
        {(row.session_id, row.parent_id) for row in rows}
    )
    feedback = await FeedbackRepository.from_session(db).of(
        [row.id for row in rows if row.id is not None and row.role == "assistant"]
    )
    return [
        MessagePublic.of(row, children[row.session_id, row.parent_id], feedback.get(row.id or 0))
        for row in rows
    ]
