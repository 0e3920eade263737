"""Reading a backup file (JSON Lines): each session's line with its messages' lines, every
record parsed and checked as the API would check it, so a bad line stops the import with its
number before anything of its session is written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from session_service.db.models import (
    FEEDBACK_COMMENT_LENGTH,
    SESSION_ID_PATTERN,
    TITLE_LENGTH,
    Rating,
)
from session_service.json_input import loads_strict

FORMAT = "session-service/2"
FORMATS = ("session-service/1", FORMAT)  # the first: no parent_id, active leaf, feedback
SESSION_FIELDS = (
    "session_id",
    "user_id",
    "title",
    "context",
    "ragflow_session_id",
    "created_at",
    "updated_at",
)
MESSAGE_FIELDS = ("id", "seq", "role", "content", "timestamp", "client_message_id")
_FIELDS = {"session": SESSION_FIELDS, "message": MESSAGE_FIELDS}
_TIMESTAMPS = {"session": ("created_at", "updated_at"), "message": ("timestamp",)}


class BackupError(Exception):
    """The file cannot be imported as it is; nothing of the session in question was written."""


def read(lines: IO[str]) -> Iterator[tuple[dict[str, Any], Iterator[dict[str, Any]]]]:
    """(session, its messages) in file order; the messages are read as they are consumed."""
    pending: dict[str, Any] | None = None
    numbered = enumerate(lines, start=1)

    def messages_of(session_id: str) -> Iterator[dict[str, Any]]:
        nonlocal pending
        for number, line in numbered:
            record = _parse(number, line)
            if record["type"] == "session":
                pending = record
                return
            if record.get("session_id") != session_id or record["type"] != "message":
                raise BackupError(f"line {number}: a message of another session in {session_id}")
            yield record

    for number, line in numbered:
        pending = _parse(number, line)
        break
    while pending is not None:
        session, pending = pending, None
        if session.get("type") != "session" or session.get("format") not in FORMATS:
            raise BackupError(f"not a {FORMAT} backup, or a message before its session")
        messages = messages_of(session["session_id"])
        yield session, messages
        for _ in messages:  # whatever the caller did not consume
            pass


def _parse(number: int, line: str) -> dict[str, Any]:
    try:
        record = loads_strict(line.encode())
    except ValueError as exc:
        raise BackupError(f"line {number} is not JSON the service can store: {exc}") from None
    if not isinstance(record, dict) or record.get("type") not in ("session", "message"):
        raise BackupError(f"line {number} is not a session or a message")
    kind = record["type"]
    missing = [name for name in _FIELDS[kind] if name not in record]
    if missing:
        raise BackupError(f"line {number}: a {kind} without {', '.join(missing)}")
    for name in _TIMESTAMPS[kind]:
        record[name] = _timestamp(number, name, record[name])
    if kind == "session":
        _check_session(number, record)
    return record


def _check_session(number: int, record: dict[str, Any]) -> None:
    """What the API would refuse, refused here too: no route could reach such a session."""
    session_id, title = record["session_id"], record["title"]
    if not isinstance(session_id, str) or not re.fullmatch(SESSION_ID_PATTERN, session_id):
        raise BackupError(f"line {number}: session_id {session_id!r} is not 1-64 of [A-Za-z0-9_-]")
    if not isinstance(title, str) or not title.strip() or len(title) > TITLE_LENGTH:
        raise BackupError(f"line {number}: title must be 1-{TITLE_LENGTH} characters, not blank")
    for name in ("archived", "pinned", "titled"):  # not in older backups
        if type(record.get(name, False)) is not bool:
            raise BackupError(f"line {number}: {name} must be true or false")
    for name in ("ragflow_session_id", "ragflow_chat_id"):  # the second: not in older backups
        value = record.get(name)
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 64):
            raise BackupError(f"line {number}: {name} must be null or 1-64 characters")


def _timestamp(number: int, name: str, value: Any) -> datetime:
    """Checked here, so a bad one stops the import with its line number, before any write."""
    try:
        stamp = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BackupError(f"line {number}: {name} is not an ISO 8601 time: {value!r}") from None
    if stamp.tzinfo is None:
        raise BackupError(f"line {number}: {name} has no time zone: {value!r}")
    return stamp


def feedback_row(session: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A message's feedback as stored; checked as the API checks it."""
    given = message["feedback"]
    where = f"message {message['id']} of session {session['session_id']}"
    if not isinstance(given, dict) or message["role"] != "assistant":
        raise BackupError(f"{where}: feedback must be an object, on an assistant message")
    comment = given.get("comment")
    if given.get("rating") not in tuple(Rating) or not (
        comment is None or (isinstance(comment, str) and len(comment) <= FEEDBACK_COMMENT_LENGTH)
    ):
        raise BackupError(f"{where}: feedback must be rated up or down, comment 2000 at most")
    try:
        at = datetime.fromisoformat(given["at"])
    except (KeyError, TypeError, ValueError):
        raise BackupError(f"{where}: feedback.at is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise BackupError(f"{where}: feedback.at has no time zone")
    return {
        "message_id": message["id"],
        "session_id": session["session_id"],
        "user_id": session["user_id"],
        "rating": given["rating"],
        "comment": comment,
        "at": at,
    }
