"""A message as clients see it: in answers, and in a reply's events as they are published."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from session_service.db.models import ChatMessage


class MessagePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "session_id": "trip-2026",
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
                }
            ]
        }
    )

    id: int
    session_id: str
    role: Literal["user", "assistant", "system"]
    content: str
    timestamp: datetime
    # read from the row's `meta` (SQLAlchemy keeps `metadata` for itself)
    metadata: dict[str, Any] = Field(validation_alias="meta")

    @classmethod
    def of(cls, row: ChatMessage) -> MessagePublic:
        return cls.model_validate(row, from_attributes=True)
