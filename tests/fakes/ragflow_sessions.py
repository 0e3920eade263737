"""The session routes of the fake RAGFlow (tests/fakes/ragflow.py), as each version answers.

List, create and delete a chat's sessions; get and rename one (docs/ragflow.md). The wire
details (envelopes, wordings, versions) are in ragflow_wire.py.
"""

from __future__ import annotations

import time
import uuid
from email.utils import formatdate
from typing import Any

from tests.fakes.http import Reply
from tests.fakes.ragflow_wire import (
    PROLOGUE,
    TENANT_ID,
    V25,
    V25_6,
    V27,
    Version,
    crash,
    data_error,
    int_or,
    json_result,
    normalise,
    not_your_chat,
    result,
    stop,
)


class SessionRoutes:
    """The sessions of every chat and their routes; FakeRagflow adds state and knobs."""

    version: tuple[int, ...]
    sessions: dict[str, dict[str, Any]]
    owned_chats: set[str]
    wiped: bool

    @property
    def v(self) -> Version:
        return normalise(self.version)

    def sessions_of(self, chat_id: str) -> dict[str, dict[str, Any]]:
        return {sid: s for sid, s in self.sessions.items() if s["chat_id"] == chat_id}

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
        page, size = int_or(query.get("page"), 1), int_or(query.get("page_size"), 30)
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
