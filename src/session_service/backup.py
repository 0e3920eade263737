"""Backup and restore: sessions with their messages as JSON Lines.

A session's line comes first (with its active leaf), then one line per message in the order
they were made (with its parent and its feedback). Export reads in pages, so memory stays
flat whatever the size; import restores ids, the tree, order and timestamps, and importing the
same file again changes nothing. A file of the first format (no tree) imports as one branch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from session_service.backup_lines import (
    FORMAT,
    MESSAGE_FIELDS,
    SESSION_FIELDS,
    BackupError,
    feedback_row,
    read,
)
from session_service.db.backup import BackupRepository
from session_service.db.feedback import FeedbackRepository
from session_service.db.models import (
    ChatMessage,
    ChatSession,
    MessageFeedback,
)
from session_service.db.search import SearchRepository

SESSIONS_PER_PAGE = 100
MESSAGES_PER_PAGE = 500


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
        feedback = await FeedbackRepository(backups.db).of([m.id for m in page if m.id])
        for message in page:
            fields = _message_fields(message, feedback.get(message.id or 0))
            _write(out, {"type": "message", "session_id": session_id, **fields})
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
            for session, messages in read(lines):
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
        chat = {  # not in older backups
            "ragflow_chat_id": session.get("ragflow_chat_id"),
            "archived": session.get("archived", False),
            "pinned": session.get("pinned", False),
            "titled": session.get("titled", True),
        }
        await backups.add_session({**values, **chat, "message_count": 0})
        counts.sessions += 1
    added = False
    known: set[int] = set()  # the session's messages so far, in the file
    last: int | None = None
    for chunk in _chunks(messages, MESSAGES_PER_PAGE):
        stored = await backups.existing_messages([m["id"] for m in chunk])
        new, feedback = [], []
        for message in chunk:
            parent = message.get("parent_id", last)  # the first format has none
            if parent is not None and parent not in known:
                raise BackupError(
                    f"message {message['id']} of session {session_id}: parent_id {parent} is "
                    "not an earlier message of the session"
                )
            known.add(message["id"])
            last = message["id"]
            place = (session_id, message["seq"])
            if message["id"] in stored:
                if stored[message["id"]] != place:
                    raise BackupError(
                        f"message {message['id']} of session {session_id} is already stored "
                        f"elsewhere ({stored[message['id']]}): this database is not a copy of it"
                    )
                counts.skipped_messages += 1
                continue
            new.append(_message_row(session_id, message, parent))
            if message.get("feedback") is not None:
                feedback.append(feedback_row(session, message))
        if new:
            await backups.add_messages(new)
            await SearchRepository.from_session(backups.db).index(
                session["user_id"], ((row["id"], row["content"]) for row in new)
            )
            await backups.add_feedback(feedback)
            counts.messages += len(new)
            added = True
    if added:
        active = session.get("active_message_id")
        await backups.recount(session_id, active if active in known else last)


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
    fields["active_message_id"] = row.active_message_id
    fields["archived"], fields["pinned"], fields["titled"] = row.archived, row.pinned, row.titled
    fields["created_at"] = row.created_at.isoformat()
    fields["updated_at"] = row.updated_at.isoformat()
    return fields


def _message_fields(row: ChatMessage, feedback: MessageFeedback | None) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in MESSAGE_FIELDS}
    fields["parent_id"] = row.parent_id
    fields["timestamp"] = row.timestamp.isoformat()
    fields["metadata"] = row.meta
    fields["feedback"] = None
    if feedback is not None:
        fields["feedback"] = {
            "rating": feedback.rating,
            "comment": feedback.comment,
            "at": feedback.at.isoformat(),
        }
    return fields


def _message_row(session_id: str, message: dict[str, Any], parent: int | None) -> dict[str, Any]:
    row = {name: message[name] for name in MESSAGE_FIELDS}
    row["meta"] = message.get("metadata") or {}
    row["session_id"] = session_id
    row["parent_id"] = parent
    return row


def _write(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
