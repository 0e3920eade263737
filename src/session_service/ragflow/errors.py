"""What RAGFlow's answers mean, whatever version said them (docs/ragflow.md sections 0 to 6).

RAGFlow answers almost everything with HTTP 200 and a `code`; the same code means different
things across versions (109 is a bad key on v0.24 but "not your chat" from v0.25), and the
wordings changed. Each error class below is one meaning, decided here once.
"""

from __future__ import annotations

from session_service.metrics import RagflowErrorKind

CODE_OK = 0
CODE_EXCEPTION = 100  # an uncaught server exception; also an unknown method (no 405 handler)
CODE_ARGUMENT = 101
CODE_DATA_ERROR = 102
CODE_AUTH = 109

# "This session is not (or no longer) this chat's": the mirror is to be made again; a delete
# asked under the chat that made the session takes it as already gone.
_SESSION_GONE = (
    "session not found",  # v0.25.1+ completions, v0.25+ rename
    "does not belong to this chat",  # v0.25.1+ completions
    "don't own the session",  # v0.24.0 / v0.25.0 completions
    "doesn't own the session",  # delete, every version
    "session does not exist",  # v0.24.0 rename
)
# "The API key cannot use this chat": nothing was done, and nothing will be until an operator
# fixes RAGFLOW_CHAT_ID or the key.
_CHAT_FORBIDDEN = (
    "no authorization",  # v0.25+ (code 109, HTTP 200)
    "don't own the chat",  # v0.24.0 delete and completions
    "do not own the assistant",  # v0.24.0 create
    "don't own the assistant",  # v0.24.0 list
    "do not own the session",  # v0.24.0 rename, when the chat is not the key's
    "don't own the dataset",  # retrieval: RAGFLOW_DATASET_IDS names one the key cannot use
)
_BAD_KEY = ("api key is invalid", "unauthorized", "authorization` can't be empty")


class RagflowError(Exception):
    """RAGFlow failed, was unreachable, or answered something we cannot use."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RagflowNotFound(RagflowError):
    """The session is not (or no longer) the chat's: unknown, deleted, or another chat's."""


class RagflowAuthError(RagflowError):
    """The API key is wrong: HTTP 401, or code 109 "API key is invalid" (v0.24)."""


class RagflowChatForbidden(RagflowError):
    """The key is valid but cannot use the chat (RAGFLOW_CHAT_ID, or a mirror's older chat),
    or a dataset of RAGFLOW_DATASET_IDS."""


class RagflowMethodNotAllowed(RagflowError):
    """The route exists without this method: code 100 `<MethodNotAllowed '405: ...'>`."""


class RagflowRouteMissing(RagflowError):
    """HTTP 404: this server has no such route (older, or the route was removed)."""


class RagflowUnsupported(RagflowError):
    """A RAGFlow version whose route cannot serve what we ask (see docs/ragflow.md §9)."""


class RagflowUnavailable(RagflowError):
    """Connection refused or dropped, a timeout, or a 5xx: worth trying again later."""


def misconfigured(exc: RagflowError) -> bool:
    """What an operator must fix (the key, the chat, a RAGFlow without the route or unable to
    serve it), as opposed to an outage that passes by itself: logged as an error."""
    return isinstance(
        exc, RagflowAuthError | RagflowChatForbidden | RagflowRouteMissing | RagflowUnsupported
    )


def error_for(code: object, message: str) -> RagflowError:
    """The error an HTTP 200 envelope with a non-zero `code` stands for."""
    lowered = message.lower()
    number = code if isinstance(code, int) else None
    if code == 401 or (code == CODE_AUTH and any(word in lowered for word in _BAD_KEY)):
        return RagflowAuthError(f"RAGFlow refused the API key: {message}", code=number)
    if code in (CODE_AUTH, CODE_DATA_ERROR) and any(w in lowered for w in _CHAT_FORBIDDEN):
        return RagflowChatForbidden(f"the API key cannot use this: {message}", code=number)
    if code == CODE_DATA_ERROR and any(words in lowered for words in _SESSION_GONE):
        return RagflowNotFound(message, code=number)
    if code == CODE_EXCEPTION and "methodnotallowed" in lowered.replace(" ", ""):
        return RagflowMethodNotAllowed(message, code=number)
    if code == CODE_ARGUMENT and "missing: messages" in lowered:
        return RagflowUnsupported(
            "this RAGFlow (v0.25.1 to v0.25.5) needs `messages` on its completions route and "
            "answers `stream: false` with a partial reply: upgrade RAGFlow to v0.25.6 or later, "
            "or ground by retrieval (RAGFLOW_DATASET_IDS)",
            code=number,
        )
    return RagflowError(f"RAGFlow error {code}: {message[:300]}", code=number)


_KINDS: tuple[tuple[type[RagflowError], RagflowErrorKind], ...] = (
    (RagflowAuthError, RagflowErrorKind.AUTH),
    (RagflowChatForbidden, RagflowErrorKind.CHAT_FORBIDDEN),
    (RagflowNotFound, RagflowErrorKind.NOT_FOUND),
    (RagflowRouteMissing, RagflowErrorKind.ROUTE_MISSING),
    (RagflowUnsupported, RagflowErrorKind.UNSUPPORTED),
    (RagflowUnavailable, RagflowErrorKind.UNAVAILABLE),
)


def error_kind(exc: RagflowError) -> RagflowErrorKind:
    """How the metrics count a failed call."""
    return next((kind for cls, kind in _KINDS if isinstance(exc, cls)), RagflowErrorKind.ERROR)
