"""What we keep of RAGFlow's answers: the grounding text and its references."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

# RAGFlow's citation marks: `[ID:n]`, and from v0.25 a bare `[n]` (its CITATION_MARKER_PATTERN).
# Its digits include the Arabic-Indic ones (U+0660-U+0669, U+06F0-U+06F9), which int() reads.
_CITATION = re.compile(r"\[(?:ID:)?\s*([0-9\u0660-\u0669\u06f0-\u06f9]+)\s*\]")


@dataclass(frozen=True, slots=True)
class Reference:
    document_name: str | None
    document_id: str | None
    chunk_id: str | None
    dataset_id: str | None
    similarity: float | None
    content: str
    cited: bool | None = None  # by the knowledge base's answer; None: no answer to cite it

    @classmethod
    def from_chunk(cls, chunk: dict[str, Any]) -> Reference:
        similarity = chunk.get("similarity")
        return cls(
            # retrieval names the file `document_keyword`; completions, `document_name`
            document_name=chunk.get("document_name") or chunk.get("document_keyword"),
            document_id=chunk.get("document_id"),
            chunk_id=chunk.get("id") or chunk.get("chunk_id"),
            dataset_id=chunk.get("dataset_id"),
            similarity=_finite(similarity),
            content=str(chunk.get("content") or chunk.get("content_with_weight") or ""),
        )

    def public(self) -> dict[str, Any]:
        """What a stored message's `metadata.references` holds (the chunk text stays out)."""
        public: dict[str, Any] = {
            "document_name": self.document_name,
            "document_id": self.document_id,
            "chunk_id": self.chunk_id,
            "dataset_id": self.dataset_id,
            "similarity": self.similarity,
        }
        if self.cited is not None:
            public["cited"] = self.cited
        return public


@dataclass(frozen=True, slots=True)
class Grounding:
    """Knowledge for the LLM, and where it came from."""

    source: str  # "retrieval" or "ragflow_chat"
    text: str
    references: list[Reference] = field(default_factory=list)


def references_from(payload: Any, *, cited: Collection[int] | None = None) -> list[Reference]:
    """The chunks of a `reference` object; tolerant of `{}`, `{"chunks": []}` and nulls.

    `reference.chunks` holds every chunk RAGFlow retrieved, cited or not; `cited` (indices into
    that list, as `[ID:n]` counts) marks those the answer cites.
    """
    if not isinstance(payload, dict):
        return []
    chunks = payload.get("chunks")
    if not isinstance(chunks, list):
        return []
    references = [Reference.from_chunk(chunk) for chunk in chunks if isinstance(chunk, dict)]
    if cited is None:
        return references
    return [replace(ref, cited=index in cited) for index, ref in enumerate(references)]


def cited_indices(answer: str) -> set[int]:
    """The chunk indices an answer cites, counted from 0 as RAGFlow's prompt numbers them."""
    return {int(number) for number in _CITATION.findall(answer)}


def _finite(value: Any) -> float | None:
    """A similarity that JSON and the database can hold: NaN and infinities become None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past any float
        return None
    return number if math.isfinite(number) else None


SNIPPET_CHARS = 1500  # of each source, in the grounding text


def with_sources(text: str, references: list[Reference]) -> str:
    """The grounding text, then each source numbered from 0 as RAGFlow numbers the chunks it
    cites (`[ID:n]` is `reference.chunks[n]`), so its citations and ours line up."""
    parts = [text] if text else []
    for index, reference in enumerate(references):
        name = reference.document_name or reference.document_id or "document"
        parts.append(f"[ID:{index}] {name}: {reference.content[:SNIPPET_CHARS]}")
    return "\n\n".join(parts)
