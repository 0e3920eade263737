"""What the fake RAGFlow (tests/fakes/ragflow.py) answers, route by route and version by version.

Everything here follows docs/ragflow.md: routes and methods, who authenticates how, the
envelopes, the wordings that changed, the chunk shapes of completions and retrieval, and the
route handlers (`RagflowApi`). A version is `(major, minor, patch)`; one between two listed
below answers as the lower one does.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from email.utils import formatdate
from itertools import accumulate
from typing import Any

from tests.fakes.http import Reply, Stream

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


# --- the routes -------------------------------------------------------------------------


class RagflowApi:
    """RAGFlow's routes as each version answers them; FakeRagflow adds state and knobs."""

    version: tuple[int, ...]
    sessions: dict[str, dict[str, Any]]
    owned_chats: set[str]
    owned_datasets: set[str]
    chunks: list[dict[str, Any]]
    ignore_stream_flag: bool
    stream_style: str
    nan_similarity: bool
    wiped: bool

    @property
    def v(self) -> Version:
        return normalise(self.version)

    def sessions_of(self, chat_id: str) -> dict[str, dict[str, Any]]:
        return {sid: s for sid, s in self.sessions.items() if s["chat_id"] == chat_id}

    # --- sessions ---------------------------------------------------------------------------

    def _new_session(self, chat_id: str, name: Any, user_id: Any) -> dict[str, Any]:
        now = time.time()
        session = {
            "id": uuid.uuid1().hex,
            "chat_id": chat_id,
            "name": name,
            "messages": [{"role": "assistant", "content": PROLOGUE}],
            "user_id": user_id,
            "create_time": int(now * 1000),
            "create_date": formatdate(now, usegmt=True),
            "update_time": int(now * 1000),
            "update_date": formatdate(now, usegmt=True),
        }
        self.sessions[session["id"]] = session
        return session

    def _shown(self, session: dict[str, Any]) -> dict[str, Any]:
        shown = {**session, "messages": [dict(m) for m in session["messages"]]}
        return {**shown, "reference": []} if self.v >= V25 else shown

    def _ok(self, data: Any = None, message: str = "success") -> Reply:
        """Success on the session routes: v0.24.0 `get_result`, v0.25+ `get_json_result`."""
        return result(data) if self.v < V25 else json_result(data, message=message)

    def _foreign(self, chat_id: str, v24_message: str) -> Reply | None:
        """The answer when the key's tenant does not own the chat; None when it does."""
        if chat_id in self.owned_chats:
            return None
        return data_error(v24_message) if self.v < V25 else not_your_chat(self.v)

    def _sessions_post(self, body: dict[str, Any], chat_id: str) -> Reply:
        v = self.v
        if refused := self._foreign(chat_id, "You do not own the assistant."):
            return refused
        name = body.get("name", "New session")
        if v < V25:  # whitespace and non-strings kept as sent
            if not name:
                return data_error("`name` can not be empty.")
        elif not isinstance(name, str) or not name.strip():
            return data_error("`name` can not be empty" + stop(v))
        else:
            name = name.strip()[:255]
        user_id = body.get("user_id", "" if v < V25 else TENANT_ID) if v < V25_6 else TENANT_ID
        return self._ok(self._shown(self._new_session(chat_id, name, user_id)))

    def _sessions_get(self, query: dict[str, str], chat_id: str) -> Reply:
        v = self.v
        if refused := self._foreign(chat_id, f"You don't own the assistant {chat_id}."):
            return refused
        orderby = query.get("orderby", "create_time")
        if orderby not in ("create_time", "update_time", "name"):
            if v >= V27:
                return json_result(None, 101, f"invalid orderby field: {orderby}")
            return crash(
                f"AttributeError(\"type object 'Conversation' has no attribute '{orderby}'\")"
            )
        page, size = _int(query.get("page"), 1), _int(query.get("page_size"), 30)
        if v >= V27 and size > 100:
            return crash("ValueError('page_size must be less than or equal to 100')")
        desc = query.get("desc", "true")
        found = [
            s
            for s in self.sessions_of(chat_id).values()
            if all(str(s[key]) == query[key] for key in ("id", "name", "user_id") if key in query)
        ]
        found.sort(
            key=lambda s: s[orderby],
            reverse=(desc.lower() if v >= V25 else desc) not in ("false", "False"),
        )
        return self._ok([self._shown(s) for s in found[(page - 1) * size : page * size]])

    def _sessions_delete(self, body: dict[str, Any], chat_id: str) -> Reply:
        v = self.v
        if refused := self._foreign(chat_id, "You don't own the chat"):
            return refused
        ids = body.get("ids")
        if not ids:  # v0.24.0: every session of the chat; v0.25+: nothing, unless delete_all
            if v >= V25 and body.get("delete_all") is not True:
                return json_result({})
            ids, self.wiped = list(self.sessions_of(chat_id)), True
            if v >= V25 and not ids:
                return json_result({})
        unique = list(dict.fromkeys(ids))
        duplicates = [f"Duplicate session ids: {i}" for i in unique if list(ids).count(i) > 1]
        errors, done = [], 0
        for sid in unique:
            if self.sessions.get(sid, {}).get("chat_id") != chat_id:
                errors.append(f"The chat doesn't own the session {sid}")
            else:
                del self.sessions[sid]
                done += 1
        failed = (errors or duplicates) if v < V25 else errors + duplicates
        if failed and done:
            data = {"success_count": done, "errors": failed}
            return self._ok(data, f"Partially deleted {done} sessions with {len(failed)} errors")
        if failed:
            return data_error(("; " if errors or v >= V25 else ";").join(failed))
        return self._ok(True if v >= V25 else None)

    def _session_get(self, query: dict[str, str], chat_id: str, sid: str) -> Reply:
        if refused := self._foreign(chat_id, ""):  # GET exists from v0.25.0 only
            return refused
        if sid not in self.sessions:
            return data_error("Session not found!")
        if self.sessions[sid]["chat_id"] != chat_id:
            return data_error("Session does not belong to this chat!")
        return json_result(self._shown(self.sessions[sid]))

    def _session_put(self, body: dict[str, Any], chat_id: str, sid: str) -> Reply:
        v = self.v
        mine = self.sessions.get(sid, {}).get("chat_id") == chat_id
        if v < V25:
            checks = [
                (not mine, "Session does not exist"),
                (chat_id not in self.owned_chats, "You do not own the session"),
                ("message" in body or "messages" in body, "`message` can not be change"),
                ("reference" in body, "`reference` can not be change"),
                ("name" in body and not body["name"], "`name` can not be empty."),
            ]
        else:
            if chat_id not in self.owned_chats:
                return not_your_chat(v)
            name = body.get("name")
            checks = [
                (not mine, "Session not found!"),
                ("message" in body or "messages" in body, "`messages` cannot be changed"),
                ("reference" in body, "`reference` cannot be changed"),
                (
                    name is not None and (not isinstance(name, str) or not name.strip()),
                    "`name` can not be empty",
                ),
            ]
        for failed, message in checks:
            if failed:
                return data_error(
                    message if v < V25 or message.endswith("!") else message + stop(v)
                )
        session = self.sessions[sid]
        if body.get("name") is not None:
            session["name"] = body["name"] if v < V25 else body["name"].strip()[:255]
        session["update_time"] = int(time.time() * 1000)
        return result() if v < V25 else json_result(self._shown(session))

    _session_patch = _session_put

    # --- completions ------------------------------------------------------------------------

    def _chat_completions_post(self, body: dict[str, Any], chat_id: str) -> Reply | Stream:
        if self.v >= V25_1:  # a compat layer over /chat/completions; a body chat_id wins
            return self._completions_post(body, chat_id)
        req = dict(body) or {"question": ""}
        if not req.get("session_id"):
            req["question"] = ""
        if chat_id not in self.owned_chats:
            return data_error(f"You don't own the chat {chat_id}")
        sid = req.get("session_id")
        if sid and self.sessions.get(sid, {}).get("chat_id") != chat_id:
            return data_error(f"You don't own the session {sid}")
        if "question" not in req:
            return crash(NO_QUESTION)
        stream = bool(req.get("stream", True)) or self.ignore_stream_flag
        if sid:
            question = str(req["question"])
            self.sessions[sid]["messages"].append({"role": "user", "content": question})
            return self._answer(chat_id, sid, question, stream, str(uuid.uuid4()), native=True)
        session = self._new_session(chat_id, "New session", req.get("user_id", ""))
        data: dict[str, Any] = {"answer": PROLOGUE, "reference": {}, "audio_binary": None}
        data.update(id=None, session_id=session["id"])
        return Stream(self._sse([data, True], message=True)) if stream else result(data)

    def _completions_post(self, body: dict[str, Any], path_chat: str = "") -> Reply | Stream:
        v = self.v
        messages: Any = body.get("messages")
        if v < V25_6 and "messages" not in body:
            return json_result(None, 101, "required argument are missing: messages; ")
        if v >= V25_6 and messages is None:
            if body.get("question") is None:
                return data_error("required argument are missing: messages", 101)
            messages = [{"role": "user", "content": body["question"]}]
        if v >= V25_6 and (not isinstance(messages, list) or not messages):
            return data_error("`messages` must be a non-empty list.", 101)
        if v >= V25_6 and messages[-1].get("role") != "user":
            return data_error("The last message must be from user.", 101)
        question = str(messages[-1].get("content", "")) if messages else ""
        message_id = (messages[-1].get("id") if messages else None) or (
            uuid.uuid4().hex if v >= V25_6 else None
        )
        chat_id = body.get("chat_id") or path_chat
        sid = body.get("session_id") or (body.get("conversation_id") if v >= V25_6 else "") or ""
        stream = bool(body.get("stream", True)) or self.ignore_stream_flag
        if sid and not chat_id:
            return data_error("`chat_id` is required when `session_id` is provided.")
        if not chat_id:  # no chat: the tenant's default model, without knowledge
            return self._answer(None, "", question, stream, message_id, native=False)
        if chat_id not in self.owned_chats:
            return not_your_chat(v)
        if sid and sid not in self.sessions:
            return data_error("Session not found!")
        if sid and self.sessions[sid]["chat_id"] != chat_id:
            return data_error("Session does not belong to this chat!")
        if not sid:
            user_id = body.get("user_id", TENANT_ID) if v < V25_6 else TENANT_ID
            sid = self._new_session(chat_id, "New session", user_id)["id"]
        stored = self.sessions[sid]["messages"]
        if v < V25_6 or body.get("pass_all_history_messages"):  # the request replaces history
            stored[:] = [dict(m) for m in messages]
        else:
            stored.append(dict(messages[-1]))
        return self._answer(chat_id, sid, question, stream, message_id, native=False)

    def _answer(
        self,
        chat_id: str | None,
        sid: str,
        question: str,
        stream: bool,
        message_id: Any,
        *,
        native: bool,
    ) -> Reply | Stream:
        """The chat's answer citing [ID:0], with every retrieved chunk in its reference."""
        v = self.v
        text = f"Paris, according to the documents [ID:0]. You asked: {question}"
        reference = self._reference(text) if chat_id else {}
        if not chat_id:
            text = f"You asked: {question}"
        head: dict[str, Any] = {"id": message_id, "session_id": sid}
        if chat_id and not native:
            head["chat_id"] = chat_id
        data: dict[str, Any] = {"answer": text, "reference": reference, "audio_binary": None}
        if stream:
            events = stream_events(text, reference, head, v, self.stream_style)
        elif V25_1 <= v < V25_6:  # `stream: false` is lost: only the first streamed piece
            data.update(answer=" ".join(text.split(" ")[:3]), reference={"chunks": []}, final=False)
            data.update(prompt="", created_at=time.time(), **head)
        else:
            data.update(prompt=PROMPT + question, created_at=time.time(), **head)
        if chat_id:  # what the session keeps: also the partial answer
            self.sessions[sid]["messages"].append({"role": "assistant", "content": data["answer"]})
        if stream:
            return Stream(self._sse(events, message=not native))
        return result(data) if native else json_result(data)

    def _reference(self, answer: str) -> dict[str, Any]:
        """All retrieved chunks; `doc_aggs` narrowed to the documents the answer cites."""
        chunks = self._chunks()
        if not chunks:
            return {}
        docs = {chunks[i]["document_id"] for i in cited(answer, self.v) if i < len(chunks)}
        aggs = doc_aggs(chunks)
        return {
            "total": len(chunks),
            "chunks": [completion_chunk(c, self.v) for c in chunks],
            "doc_aggs": [a for a in aggs if a["doc_id"] in docs] or aggs,
        }

    def _chunks(self, datasets: Any = None) -> list[dict[str, Any]]:
        chunks = [dict(c) for c in self.chunks if datasets is None or c["dataset_id"] in datasets]
        if self.nan_similarity and chunks:
            chunks[0]["similarity"] = math.nan
        return chunks

    @staticmethod
    async def _sse(events: list[Any], *, message: bool) -> AsyncIterator[bytes]:
        for data in events:
            event = (
                {"code": 0, "message": "", "data": data} if message else {"code": 0, "data": data}
            )
            yield f"data:{json.dumps(event, ensure_ascii=False)}\n\n".encode()

    # --- retrieval --------------------------------------------------------------------------

    def _retrieval_post(self, body: dict[str, Any]) -> Reply:
        v = self.v
        datasets = body.get("dataset_ids")
        if not datasets:
            return data_error("`dataset_ids` is required.")
        if not isinstance(datasets, list):
            return data_error("`dataset_ids` should be a list")
        for dataset in datasets:
            if dataset not in self.owned_datasets:
                return data_error(f"You don't own the dataset {dataset}.")
        if "question" not in body:
            return data_error("`question` is required.")
        if not str(body["question"] or "").strip():
            return result({"total": 0, "chunks": [], "doc_aggs": {}})
        pool = self._chunks(datasets)
        documents = body.get("document_ids") or []
        if not isinstance(documents, list):
            return data_error("`documents` should be a list")
        for document in documents:
            if document not in {c["document_id"] for c in pool}:
                return data_error(f"The datasets don't own the document {document}")
        if v >= V25_1 and _int(body.get("top_k"), 1024) <= 0:
            return data_error("`top_k` must be greater than 0")
        if not isinstance(highlight := body.get("highlight", False), bool):
            return data_error("`highlight` should be a boolean")
        page, size = _int(body.get("page"), 1), _int(body.get("page_size"), 30)
        if v >= V27 and size > 100:
            return crash("ValueError('page_size must be less than or equal to 100')")
        threshold = float(body.get("similarity_threshold", 0.2))
        hits = [
            c
            for c in pool
            if (not documents or c["document_id"] in documents)
            and not c["similarity"] < threshold  # NaN kept: the `nan_similarity` knob
        ]
        hits.sort(key=lambda c: -c["similarity"] if c["similarity"] == c["similarity"] else 0)
        chunks = [retrieval_chunk(c, v, highlight) for c in hits[(page - 1) * size :][:size]]
        return result({"total": len(hits), "chunks": chunks, "doc_aggs": doc_aggs(hits)})


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
