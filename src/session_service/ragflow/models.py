"""What we keep of RAGFlow's answers: the grounding text and its references."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Reference:
    document_name: str | None
    document_id: str | None
    chunk_id: str | None
    dataset_id: str | None
    similarity: float | None
    content: str

    @classmethod
    def from_chunk(cls, chunk: dict[str, Any]) -> Reference:
        similarity = chunk.get("similarity")
        return cls(
            # retrieval names the file `document_keyword`; completions, `document_name`
            document_name=chunk.get("document_name") or chunk.get("document_keyword"),
            document_id=chunk.get("document_id"),
            chunk_id=chunk.get("id") or chunk.get("chunk_id"),
            dataset_id=chunk.get("dataset_id"),
            similarity=float(similarity) if isinstance(similarity, int | float) else None,
            content=str(chunk.get("content") or chunk.get("content_with_weight") or ""),
        )

    def public(self) -> dict[str, Any]:
        """What a stored message's `metadata.references` holds (the chunk text stays out)."""
        return {
            "document_name": self.document_name,
            "document_id": self.document_id,
            "chunk_id": self.chunk_id,
            "dataset_id": self.dataset_id,
            "similarity": self.similarity,
        }


@dataclass(frozen=True, slots=True)
class Grounding:
    """Knowledge for the LLM, and where it came from."""

    source: str  # "retrieval" or "ragflow_chat"
    text: str
    references: list[Reference] = field(default_factory=list)


def references_from(payload: Any) -> list[Reference]:
    """The chunks of a `reference` object; tolerant of `{}`, `{"chunks": []}` and nulls."""
    if not isinstance(payload, dict):
        return []
    chunks = payload.get("chunks")
    if not isinstance(chunks, list):
        return []
    return [Reference.from_chunk(chunk) for chunk in chunks if isinstance(chunk, dict)]
