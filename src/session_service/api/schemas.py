"""Request and response bodies of the HTTP API (api.md "Objects")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from session_service.chat.public import MessagePublic
from session_service.chat.questions import Ask
from session_service.chat.sessions import DEFAULT_TITLE
from session_service.db.models import (
    SESSION_ID_PATTERN,
    TITLE_LENGTH,
    ChatSession,
)
from session_service.db.types import MAX_POSITION

RESERVED_SESSION_IDS = frozenset({"status", "cleanup"})
MAX_CLEANUP_AGE_SECONDS = 10 * 365 * 24 * 3600  # "every agent idle at all" needs no more


def _not_blank(title: str) -> str:
    # Not only spaces: format characters (zero-width space, BOM) show nothing either.
    if not any(char.isprintable() and not char.isspace() for char in title):
        raise ValueError("title must not be empty or blank")
    return title


Title = Annotated[str, Field(max_length=TITLE_LENGTH), AfterValidator(_not_blank)]


class SessionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Trip to Lisbon",
                    "context": {"language": "en"},
                    "session_id": "trip-2026",
                }
            ]
        },
    )

    title: Title = DEFAULT_TITLE
    context: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(
        None,
        pattern=SESSION_ID_PATTERN,
        description="Caller-chosen id; creating it again is idempotent for its owner.",
    )

    @field_validator("session_id")
    @classmethod
    def _not_a_route(cls, value: str | None) -> str | None:
        if value in RESERVED_SESSION_IDS:
            raise ValueError(f"'{value}' is a route name and cannot be a session id")
        return value


class SessionUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"title": "Lisbon, spring 2026"}]}
    )

    title: Title | None = None
    context: dict[str, Any] | None = Field(None, description="Replaces the whole context.")
    active_message_id: int | None = Field(
        None,
        ge=1,
        le=MAX_POSITION,
        description=(
            "Switch branch: the branch through this message, down to the newest message below "
            "it, becomes the active one (409 while a reply is being generated)."
        ),
    )
    archived: StrictBool | None = Field(None, description="Leave it out of the list, or back in.")
    pinned: StrictBool | None = Field(None, description="List it first.")


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"message_id": 42}]})

    message_id: int = Field(ge=1, le=MAX_POSITION, description="The last message to copy")
    title: Title | None = Field(None, description="Default: the source's title")


class SessionPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "trip-2026",
                    "user_id": "alice",
                    "title": "Trip to Lisbon",
                    "created_at": "2026-11-24T09:58:00.000001Z",
                    "updated_at": "2026-11-24T10:00:00.123456Z",
                    "context": {"language": "en"},
                    "ragflow_session_id": "9f1c0d7e2a6b4c8d9e0f1a2b3c4d5e6f",
                    "message_count": 2,
                    "active_message_id": 42,
                    "archived": False,
                    "pinned": True,
                    "agent_active": True,
                }
            ]
        }
    )

    session_id: str
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    context: dict[str, Any]
    ragflow_session_id: str | None
    message_count: int = Field(description="Every stored message, on every branch")
    active_message_id: int | None = Field(description="The active branch's last message")
    archived: bool
    pinned: bool
    agent_active: bool

    @classmethod
    def of(cls, row: ChatSession, *, agent_active: bool) -> SessionPublic:
        return cls(
            session_id=row.session_id,
            user_id=row.user_id,
            title=row.title,
            created_at=row.created_at,
            updated_at=row.updated_at,
            context=row.context,
            ragflow_session_id=row.ragflow_session_id,
            message_count=row.message_count,
            active_message_id=row.active_message_id,
            archived=row.archived,
            pinned=row.pinned,
            agent_active=agent_active,
        )


class SessionDetail(SessionPublic):
    messages: list[MessagePublic]
    has_more_messages: bool


class SessionPage(BaseModel):
    items: list[SessionPublic]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[MessagePublic]
    next_cursor: str | None


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": "Session not found", "code": "session_not_found"}]
        }
    )

    detail: str
    code: str = Field(description="what went wrong, for programs: see docs/api.md §1")


IfBusy = Annotated[
    Literal["wait", "reject", "interrupt"],
    Field(
        description=(
            "`wait` for another turn to end; `reject`: answer 409 at once if one holds the "
            "session; `interrupt`: stop the session's running reply, then wait."
        )
    ),
]


class TurnRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "content": "What should I see in Lisbon?",
                    "client_message_id": "c-0001",
                    "stream": False,
                }
            ]
        },
    )

    content: str = Field(
        min_length=1, description="The message, 1 to 32,000 characters (longer: 413)."
    )
    client_message_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Your id for this message: sending it again returns the stored pair.",
    )
    parent_id: int | None = Field(
        None,
        ge=1,
        le=MAX_POSITION,
        description=(
            "An edit: the assistant message to answer instead of the active leaf (`null`: a "
            "new first message); the new branch becomes active. Absent: the active leaf."
        ),
    )
    if_busy: IfBusy = "wait"
    stream: bool = Field(False, description="Answer as Server-Sent Events (see below).")

    def step(self) -> Ask:
        edit = "parent_id" in self.model_fields_set
        return Ask(self.content, self.client_message_id, edit=edit, parent_id=self.parent_id)


class RegenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"stream": True}]})

    if_busy: IfBusy = "wait"
    stream: bool = Field(False, description="Answer as Server-Sent Events, as a turn does.")


class TurnResponse(BaseModel):
    user_message: MessagePublic
    assistant_message: MessagePublic


class AgentStatus(BaseModel):
    session_id: str
    user_id: str
    idle_seconds: float
    last_used_at: datetime
    worker_pid: int = Field(description="The worker process holding the agent.")


class WorkerPoolStatus(BaseModel):
    """One worker process's share of the replica's agents."""

    pid: int
    active_agents: int
    max_agents: int
    evictions_total: int
    restores_total: int


class PoolStatus(BaseModel):
    """Every worker process of this replica together (`serve --workers N`), and each one in
    `workers`: counts and `max_agents` are sums, `agents` the most idle of all of them."""

    active_agents: int
    max_agents: int
    max_age_seconds: int = Field(description="AGENT_MAX_AGE_SECONDS, rounded up to seconds.")
    cleanup_interval_seconds: int = Field(
        description="AGENT_CLEANUP_INTERVAL_SECONDS, rounded up to seconds."
    )
    evictions_total: int
    restores_total: int
    agents: list[AgentStatus]
    workers: list[WorkerPoolStatus]


class CleanupRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"max_age_seconds": 600}]}
    )

    max_age_seconds: int | None = Field(None, ge=0, le=MAX_CLEANUP_AGE_SECONDS)


class WorkerCleanup(BaseModel):
    """What one worker process released, and what it still holds."""

    pid: int
    released: int
    active_agents: int


class CleanupResponse(BaseModel):
    """Every worker process of this replica together, and each one in `workers`."""

    released: int
    active_agents: int
    workers: list[WorkerCleanup]
