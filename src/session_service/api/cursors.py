"""Opaque paging cursors: base64url of a small JSON document. A bad one answers 422, in the
same shape as any other invalid parameter."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from fastapi.exceptions import RequestValidationError

from session_service.chat.search import Position
from session_service.db.repositories import SessionKey
from session_service.db.types import MAX_POSITION
from session_service.json_input import loads_strict


def _encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invalid_cursor(parameter: str, cursor: str) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("query", parameter),
                "msg": "invalid cursor: pass a next_cursor exactly as it was given",
                "input": cursor,
            }
        ]
    )


def _decode(cursor: str, parameter: str) -> dict[str, Any]:
    try:
        payload = loads_strict(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise invalid_cursor(parameter, cursor) from None
    if not isinstance(payload, dict):
        raise invalid_cursor(parameter, cursor)
    return payload


def encode_session_cursor(key: SessionKey) -> str:
    return _encode({"p": key.pinned, "u": key.updated_at.isoformat(), "s": key.session_id})


def decode_session_cursor(cursor: str) -> SessionKey:
    payload = _decode(cursor, "cursor")
    try:
        updated_at = datetime.fromisoformat(payload["u"])
        session_id = payload["s"]
    except (KeyError, TypeError, ValueError):
        raise invalid_cursor("cursor", cursor) from None
    pinned = payload.get("p", False)  # a cursor from before pins: among the unpinned
    if updated_at.tzinfo is None or not isinstance(session_id, str) or type(pinned) is not bool:
        raise invalid_cursor("cursor", cursor)
    return SessionKey(pinned=pinned, updated_at=updated_at, session_id=session_id)


def encode_position_cursor(position: int) -> str:
    """For lists paged by a growing number (message seq, audit event id): "before this"."""
    return _encode({"before": position})


def decode_position_cursor(cursor: str, parameter: str) -> int:
    position = _decode(cursor, parameter).get("before")
    if (
        not isinstance(position, int)
        or isinstance(position, bool)
        or not 0 < position <= MAX_POSITION
    ):
        raise invalid_cursor(parameter, cursor)
    return position


def encode_time_cursor(at: datetime, position: int) -> str:
    """For lists newest first by a time, ties by a growing number (feedback: its message)."""
    return _encode({"at": at.isoformat(), "before": position})


def decode_time_cursor(cursor: str) -> tuple[datetime, int]:
    payload = _decode(cursor, "cursor")
    try:
        at = datetime.fromisoformat(payload["at"])
    except (KeyError, TypeError, ValueError):
        raise invalid_cursor("cursor", cursor) from None
    if at.tzinfo is None:
        raise invalid_cursor("cursor", cursor)
    return at, decode_position_cursor(cursor, "cursor")


def encode_search_cursor(at: Position) -> str:
    """Both of a search's positions: messages below an id, titles after a session."""
    titles = (
        None if at.titles_after is None else [at.titles_after[0].isoformat(), at.titles_after[1]]
    )
    return _encode({"m": at.messages_below, "t": titles, "td": at.titles_done})


def decode_search_cursor(cursor: str) -> Position:
    payload = _decode(cursor, "cursor")
    below, titles, titles_done = payload.get("m"), payload.get("t"), payload.get("td")
    if (
        not isinstance(below, int)
        or isinstance(below, bool)
        or not 0 <= below <= MAX_POSITION
        or type(titles_done) is not bool
    ):
        raise invalid_cursor("cursor", cursor)
    if titles is None:
        return Position(below, None, titles_done)
    try:
        at, session_id = titles
        after = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        raise invalid_cursor("cursor", cursor) from None
    if after.tzinfo is None or not isinstance(session_id, str):
        raise invalid_cursor("cursor", cursor)
    return Position(below, (after, session_id), titles_done)
