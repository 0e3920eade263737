"""The completion and retrieval routes of the fake RAGFlow (tests/fakes/ragflow.py).

A chat's answer (streamed or not, through either completions route) cites the chunks it
retrieved; retrieval searches them (docs/ragflow.md). The wire details are in ragflow_wire.py.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tests.fakes.http import Reply, Stream
from tests.fakes.ragflow_sessions import SessionRoutes
from tests.fakes.ragflow_wire import (
    NO_QUESTION,
    PROLOGUE,
    PROMPT,
    TENANT_ID,
    V25_1,
    V25_6,
    V27,
    cited,
    completion_chunk,
    crash,
    data_error,
    doc_aggs,
    int_or,
    json_result,
    not_your_chat,
    result,
    retrieval_chunk,
    stream_events,
)


class AnswerRoutes(SessionRoutes):
    """Completions and retrieval; a completion opens and extends the sessions it answers in."""

    owned_datasets: set[str]
    chunks: list[dict[str, Any]]
    ignore_stream_flag: bool
    stream_style: str
    nan_similarity: bool

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
        if v >= V25_1 and int_or(body.get("top_k"), 1024) <= 0:
            return data_error("`top_k` must be greater than 0")
        if not isinstance(highlight := body.get("highlight", False), bool):
            return data_error("`highlight` should be a boolean")
        page, size = int_or(body.get("page"), 1), int_or(body.get("page_size"), 30)
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
