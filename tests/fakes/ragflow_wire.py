"""What the fake RAGFlow (tests/fakes/ragflow.py) says on the wire, version by version.

Everything here follows docs/ragflow.md: the versions, routes and methods, who authenticates
how, the envelopes, the wordings that changed, and the chunk shapes of completions and
retrieval. The route handlers that use them are in ragflow_sessions.py and ragflow_answers.py.
A version is `(major, minor, patch)`; one between two listed below answers as the lower one does.
"""

from __future__ import annotations

import math
import re
import time
from itertools import accumulate
from typing import Any

from tests.fakes.http import Reply

Version = tuple[int, int, int]
V24 = (0, 24, 0)
V25 = (0, 25, 0)  # session routes move to chat_api (login_required): a bad key is HTTP 401
V25_1 = (0, 25, 1)  # PATCH rename, /chat/completions, the old completions route a compat layer
V25_2 = (0, 25, 2)  # the compat PUT rename works again
V25_6 = (0, 25, 6)  # completions take `question` again, and `stream: false` works
V26 = (0, 26, 0)  # retrieval is login_required; completions turn NaN into null
V26_1 = (0, 26, 1)  # the final stream event's answer is "" again
V27 = (0, 27, 0)  # "no authorization", and chat_api messages lose their final period
SUPPORTED = (V24, V25, V25_1, V25_6, V27)
TENANT_ID = "tenant00000000000000000000000001"  # the key's tenant (the user, from v0.25)
PROLOGUE = "Hi! I'm your assistant."


def normalise(version: tuple[int, ...]) -> Version:
    """(0, 27) is (0, 27, 0)."""
    major, minor, patch = (*version, 0, 0, 0)[:3]
    return (major, minor, patch)


# --- envelopes (api/utils/api_utils.py), all HTTP 200 -------------------------------------


def result(data: Any = None) -> Reply:
    """`get_result`: success without a `message`, and without `data` when there is none."""
    return Reply(200, {"code": 0} if data is None else {"code": 0, "data": data})


def json_result(data: Any = None, code: int = 0, message: str = "success") -> Reply:
    """`get_json_result`: always code, message and data."""
    return Reply(200, {"code": code, "message": message, "data": data})


def data_error(message: str, code: int = 102) -> Reply:
    """`get_error_data_result` / `get_data_error_result`: no `data` key."""
    return Reply(200, {"code": code, "message": message})


def crash(text: str) -> Reply:
    """`server_error_response(e)` for an uncaught exception whose repr is `text`."""
    lowered = text.lower()
    if "401" in lowered or "unauthorized" in lowered:
        return Reply(401, {"code": 401, "message": "Unauthorized", "data": None})
    return Reply(200, {"code": 100, "message": text, "data": None})


def not_found(path: str) -> Reply:
    return Reply(
        404, {"code": 404, "message": f"Not Found: {path}", "data": None, "error": "Not Found"}
    )


METHOD_NOT_ALLOWED = "<MethodNotAllowed '405: Method Not Allowed'>"
PUT_BROKEN = (  # v0.25.1's compat PUT calls a function that does not exist
    "AttributeError(\"module 'api.apps.restful_apis.chat_api' has no attribute 'patch_session'\")"
)
BAD_JSON = "<BadRequest '400: Bad Request'>"
MALFORMED_JSON = (
    "Malformed JSON syntax: Missing commas/brackets or invalid encoding"  # v0.27 delete
)
NO_QUESTION = "TypeError(\"async_completion() missing 1 required positional argument: 'question'\")"
NOT_AN_OBJECT = "TypeError('JSON payload must be an object.')"


def not_your_chat(v: Version) -> Reply:
    """chat_api's answer (v0.25+) to a valid key for a chat its tenant does not own."""
    message = "no authorization" if v >= V27 else "No authorization."
    return json_result(False, 109, message)


def stop(v: Version) -> str:
    """The period that chat_api's messages end with, up to v0.26."""
    return "" if v >= V27 else "."


# --- routes, methods and authentication --------------------------------------------------

ROUTES = (
    (re.compile(r"^/api/v1/chats/([^/]+)/sessions$"), "sessions"),
    (re.compile(r"^/api/v1/chats/([^/]+)/sessions/([^/]+)$"), "session"),
    (re.compile(r"^/api/v1/chats/([^/]+)/completions$"), "chat_completions"),
    (re.compile(r"^/api/v1/chat/completions$"), "completions"),
    (re.compile(r"^/api/v1/retrieval$"), "retrieval"),
)


def methods(route: str, v: Version) -> set[str]:
    """The methods a route has; none means the route does not exist (a 404)."""
    if route == "sessions":
        return {"GET", "POST", "DELETE"}
    if route == "session":
        return {"PUT"} if v < V25 else {"GET", "PUT"} if v < V25_1 else {"GET", "PATCH", "PUT"}
    if route == "completions":
        return {"POST"} if v >= V25_1 else set()
    return {"POST"}


def token_required(route: str, v: Version) -> bool:
    """`token_required` (answers a bad key itself) rather than `login_required` (HTTP 401)."""
    if route == "retrieval":
        return v < V26
    if route == "chat_completions":
        return v < V25_1
    return v < V25


def presented_key(authorization: str, route: str, v: Version) -> str:
    """token_required takes the second word; login_required what follows "Bearer ", or all."""
    words = authorization.split()
    if token_required(route, v) or authorization[:7].lower() == "bearer ":
        return words[1] if len(words) > 1 else ""
    return authorization


UNAUTHORIZED = "<Unauthorized '401: Unauthorized'>"
INVALID_KEY = "Authentication error: API key is invalid!"


def refuse_key(route: str, v: Version, authorization: str, style: str | None) -> Reply:
    """The answer to a missing, malformed or unknown API key; `style` overrides the version."""
    if style == "401" or (style is None and not token_required(route, v)):
        return Reply(401, {"code": 401, "message": UNAUTHORIZED, "data": None})
    if style in ("109", "401/109"):
        if style == "109":  # v0.24.0's token_required
            return Reply(200, {"code": 109, "message": INVALID_KEY, "data": False})
        return Reply(401, {"code": 109, "message": INVALID_KEY, "data": None})
    if not authorization:
        code, message = 0, "`Authorization` can't be empty"
    elif len(authorization.split()) < 2:
        code, message = (0 if v < V25 else 109), "Please check your authorization format."
    else:
        code, message = 109, INVALID_KEY
    if v < V25:
        return Reply(200, {"code": code, "message": message, "data": False})
    return Reply(401, {"code": code, "message": message, "data": None})


# --- completions --------------------------------------------------------------------------

PROMPT = "You are an intelligent assistant. ...\n\n### Query:\n"


def cited(answer: str, v: Version) -> list[int]:
    """The chunk indices an answer cites: `[ID:n]`, and from v0.25 also a bare `[n]`."""
    pattern = r"\[ID:([0-9]+)\]" if v < V25 else r"\[(?:ID:)?([0-9]+)\]"
    return [int(n) for n in re.findall(pattern, answer)]


def final_answer_kept(v: Version) -> bool:
    """v0.25.0 to v0.26.0 repeat the whole answer in the final stream event."""
    return V25 <= v < V26_1


def stream_events(
    text: str, reference: dict[str, Any], head: dict[str, Any], v: Version, style: str
) -> list[Any]:
    """The `data` of each event: word deltas, the final event, the `true` sentinel."""
    pieces = [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))]
    if style == "cumulative":  # before v0.24: each event holds the whole answer so far
        so_far = [{"answer": a, "reference": {}, **head} for a in accumulate(pieces)]
        return [*so_far, {"answer": text, "reference": reference, **head}, True]
    deltas = [
        {"answer": p, "reference": {"chunks": []}, "audio_binary": None, "final": False, **head}
        for p in pieces
    ]
    final: dict[str, Any] = {"answer": text if final_answer_kept(v) else "", "reference": reference}
    final.update(prompt=PROMPT, created_at=time.time(), final=True, **head)
    return [*deltas, final, True]


def completion_chunk(chunk: dict[str, Any], v: Version) -> dict[str, Any]:
    """A `reference.chunks` item (`chunks_format`); NaN becomes null from v0.26.0."""
    shown = {
        "id": chunk["id"],
        "content": chunk["content"],
        "document_id": chunk["document_id"],
        "document_name": chunk["document_name"],
        "dataset_id": chunk["dataset_id"],
        "image_id": "",
        "positions": [],
        "url": None,
        "similarity": chunk["similarity"],
        "vector_similarity": chunk["vector_similarity"],
        "term_similarity": chunk["term_similarity"],
        "doc_type": "",
    }
    if v >= V25:
        shown["row_id"] = None
    if v >= V27:
        shown["document_metadata"] = {}
    if v >= V26:
        for key, value in shown.items():
            if isinstance(value, float) and not math.isfinite(value):
                shown[key] = None
    return shown


def retrieval_chunk(chunk: dict[str, Any], v: Version, highlight: bool) -> dict[str, Any]:
    """A `/retrieval` chunk: `document_keyword`, never `document_name`; NaN stays NaN."""
    shown = {
        "id": chunk["id"],
        "content": chunk["content"],
        "content_ltks": chunk["content"].lower(),
        "document_id": chunk["document_id"],
        "document_keyword": chunk["document_name"],
        "dataset_id": chunk["dataset_id"],
        "important_keywords": [],
        "image_id": "",
        "similarity": chunk["similarity"],
        "vector_similarity": chunk["vector_similarity"],
        "term_similarity": chunk["term_similarity"],
        "positions": [],
        "doc_type_kwd": "",
        "mom_id": "",
    }
    if v >= V25:
        shown.update(tag_kwd=[], row_id=None)
    if highlight:
        shown["highlight"] = chunk["content"]
    return shown


def doc_aggs(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`[{doc_name, doc_id, count}]`, most hits first."""
    counts: dict[str, dict[str, Any]] = {}
    for chunk in chunks:
        agg = counts.setdefault(
            chunk["document_id"],
            {"doc_name": chunk["document_name"], "doc_id": chunk["document_id"], "count": 0},
        )
        agg["count"] += 1
    return sorted(counts.values(), key=lambda agg: -int(agg["count"]))


def int_or(value: Any, default: int) -> int:
    """A query or body number as RAGFlow reads it: `default` when absent or not a number."""
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
