"""Backup and restore: sessions with their messages as JSON Lines.

A session's line comes first, then one line per message in order. Export reads in pages, so
memory stays flat whatever the size; import restores ids, order and timestamps, and
importing the same file again changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from session_service.db.backup import BackupRepository
from session_service.db.models import (
    SESSION_ID_PATTERN,
    TITLE_LENGTH,
    ChatMessage,
    ChatSession,
)
from session_service.json_input import loads_strict

FORMAT = "session-service/1"
SESSIONS_PER_PAGE = 100
MESSAGES_PER_PAGE = 500
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


@dataclass
class Counts:
    sessions: int = 0
    messages: int = 0
    skipped_sessions: int = 0
    skipped_messages: int = 0


async def export(
    session_factory: async_sessionmaker[AsyncSession],
    out: IO[str],
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    progress: bool = False,
) -> Counts:
    counts = Counts()
    async with session_factory() as db:
        backups = BackupRepository.from_session(db)
        total = await backups.count_sessions(user_id=user_id, session_id=session_id)
        with tqdm(total=total, unit="session", disable=not progress) as bar:
            after = ""
            while page := await backups.sessions_after(
                after, user_id=user_id, session_id=session_id, limit=SESSIONS_PER_PAGE
            ):
                for row in page:
                    _write(out, {"type": "session", "format": FORMAT, **_session_fields(row)})
                    counts.messages += await _export_messages(backups, out, row.session_id)
                    counts.sessions += 1
                    bar.update()
                after = page[-1].session_id
                db.expunge_all()  # keep memory flat
    return counts


async def _export_messages(backups: BackupRepository, out: IO[str], session_id: str) -> int:
    written, after_seq = 0, 0
    while page := await backups.messages_after(session_id, after_seq, MESSAGES_PER_PAGE):
        for message in page:
            _write(out, {"type": "message", "session_id": session_id, **_message_fields(message)})
            written += 1
        after_seq = page[-1].seq
        backups.db.expunge_all()
    return written


async def restore(
    session_factory: async_sessionmaker[AsyncSession], path: Path, *, progress: bool = False
) -> Counts:
    """Import a file written by `export`: each session in one transaction of its own."""
    counts = Counts()
    with path.open(encoding="utf-8") as lines, tqdm(unit="session", disable=not progress) as bar:
        try:
            for session, messages in _read(lines):
                async with session_factory() as db, db.begin():
                    await _restore_session(
                        BackupRepository.from_session(db), session, messages, counts
                    )
                bar.update()
        except UnicodeDecodeError as exc:
            raise BackupError(f"the file is not UTF-8 text: {exc.reason}") from None
    return counts


async def _restore_session(
    backups: BackupRepository,
    session: dict[str, Any],
    messages: Iterator[dict[str, Any]],
    counts: Counts,
) -> None:
    session_id = session["session_id"]
    if await backups.session_exists(session_id):
        counts.skipped_sessions += 1
    else:
        values = {name: session[name] for name in SESSION_FIELDS}
        chat = {"ragflow_chat_id": session.get("ragflow_chat_id")}  # not in older backups
        await backups.add_session({**values, **chat, "message_count": 0})
        counts.sessions += 1
    added = False
    for chunk in _chunks(messages, MESSAGES_PER_PAGE):
        stored = await backups.existing_messages([m["id"] for m in chunk])
        new = []
        for message in chunk:
            place = (session_id, message["seq"])
            if message["id"] in stored:
                if stored[message["id"]] != place:
                    raise BackupError(
                        f"message {message['id']} of session {session_id} is already stored "
                        f"elsewhere ({stored[message['id']]}): this database is not a copy of it"
                    )
                counts.skipped_messages += 1
                continue
            new.append(_message_row(session_id, message))
        if new:
            await backups.add_messages(new)
            counts.messages += len(new)
            added = True
    if added:
        await backups.recount(session_id)


def _read(lines: IO[str]) -> Iterator[tuple[dict[str, Any], Iterator[dict[str, Any]]]]:
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
            if record.get("session_id") != session_id:
                raise BackupError(f"line {number}: a message of another session in {session_id}")
            yield record

    for number, line in numbered:
        pending = _parse(number, line)
        break
    while pending is not None:
        session, pending = pending, None
        if session.get("type") != "session" or session.get("format") != FORMAT:
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


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _session_fields(row: ChatSession) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in SESSION_FIELDS}
    fields["ragflow_chat_id"] = row.ragflow_chat_id
    fields["created_at"] = row.created_at.isoformat()
    fields["updated_at"] = row.updated_at.isoformat()
    return fields


def _message_fields(row: ChatMessage) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in MESSAGE_FIELDS}
    fields["timestamp"] = row.timestamp.isoformat()
    fields["metadata"] = row.meta
    return fields


def _message_row(session_id: str, message: dict[str, Any]) -> dict[str, Any]:
    row = {name: message[name] for name in MESSAGE_FIELDS}
    row["meta"] = message.get("metadata") or {}
    row["session_id"] = session_id
    return row


def _write(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
