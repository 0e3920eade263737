"""RAGFlow's answer as one `{code, message, data}` envelope: a JSON body, or a completion
stream folded into one (sent when `stream: false` was ignored), whatever the version's stream
shape (docs/ragflow.md section 6.5)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from session_service.ragflow.errors import CODE_OK, RagflowError


def envelope_of(response: httpx.Response) -> dict[str, Any]:
    """The `{code, data}` envelope; a stream (sent when `stream: false` was ignored) folded."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return _fold_stream(response.text)
    try:
        envelope = response.json()
    except ValueError as exc:
        raise RagflowError("RAGFlow answered something that is not JSON") from exc
    if not isinstance(envelope, dict):
        raise RagflowError("RAGFlow answered without an envelope")
    return envelope


def _fold_stream(text: str) -> dict[str, Any]:
    """One envelope from a completion stream: v0.24+ deltas or older cumulative answers."""
    answer, reference, deltas = "", None, False
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[len("data:") :])
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("code") not in (CODE_OK, None):
            return event
        data = event.get("data")
        if data is True:  # the end sentinel
            break
        if not isinstance(data, dict):
            continue
        if data.get("reference"):
            reference = data["reference"]
        piece = str(data.get("answer") or "")
        if data.get("final") is True:
            # v0.25.0-v0.26.0 repeat the whole answer (with citations) in the final event;
            # v0.24 and v0.26.1+ send it empty.
            answer = piece or answer
            continue
        if "final" in data:
            deltas = True
        answer = answer + piece if deltas else (piece or answer)
    return {"code": CODE_OK, "data": {"answer": answer, "reference": reference}}
