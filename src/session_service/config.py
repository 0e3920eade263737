"""Settings from the environment and an optional `.env` file (names as in api.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/sessions.db"


class ConfigError(Exception):
    """A setting has a value the service cannot run with; the message names the variable."""


class McpHttpServer(BaseModel):
    """An MCP server over streamable HTTP."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    transport: Literal["streamable_http", "http"]
    url: str
    headers: dict[str, str] = {}

    def connection(self) -> dict[str, Any]:
        return {"transport": "streamable_http", "url": self.url, "headers": self.headers}


class McpStdioServer(BaseModel):
    """An MCP server the service starts as a process, speaking over its standard streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    transport: Literal["stdio"]
    command: str
    args: list[str] = []
    env: dict[str, str] | None = None

    def connection(self) -> dict[str, Any]:
        return {"transport": "stdio", "command": self.command, "args": self.args, "env": self.env}


McpServer = Annotated[McpHttpServer | McpStdioServer, Field(discriminator="transport")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    database_url: str = ""
    # host:port of every node of a cluster (or servers holding the same data); DATABASE_URL
    # still gives the driver, user, password and database (db/hosts.py)
    database_hosts: Annotated[list[str], NoDecode] = []
    mysql_host: str | None = None
    mysql_port: int = Field(3306, ge=1, le=65535)
    mysql_user: str | None = None
    mysql_password: SecretStr | None = None
    mysql_database: str | None = None
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_pool_timeout_seconds: float = Field(10.0, gt=0)
    db_reserve_pool_size: int = Field(4, ge=1)

    llm_provider: Literal["offline", "openai"] = "offline"
    llm_model: str = "gpt-4o-mini"
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(60.0, gt=0)

    ragflow_base_url: str | None = None
    ragflow_api_key: SecretStr | None = None
    ragflow_chat_id: str | None = None
    ragflow_dataset_ids: Annotated[list[str], NoDecode] = []
    ragflow_timeout_seconds: float = Field(60.0, gt=0)
    ragflow_retry_interval_seconds: float = Field(30.0, gt=0)

    agent_max_age_seconds: float = Field(1800, ge=0)
    agent_cleanup_interval_seconds: float = Field(300, gt=0)
    agent_pool_max_size: int = Field(1000, ge=1)
    agent_history_max_tokens: int = Field(8000, ge=100)
    # always: RAGFlow is asked before the LLM, every turn; tools: the model calls it when it
    # chooses (chat/tool_agent.py); off: never (sessions are still mirrored)
    agent_grounding: Literal["always", "tools", "off"] = "always"
    agent_max_steps: int = Field(5, ge=1, le=50)
    agent_tool_timeout_seconds: float = Field(30.0, gt=0)
    # with tools: MCP servers by name, as JSON or `@file.json` (chat/mcp_tools.py)
    mcp_servers: Annotated[dict[str, McpServer], NoDecode] = {}
    agent_system_prompt: str = (
        "You are a helpful assistant in a chat session. Answer the user's latest message, "
        "using the conversation so far and any knowledge you are given."
    )
    turn_lock_timeout_seconds: float = Field(120, ge=0)
    turn_lock_lease_seconds: float = Field(30, ge=1)
    max_concurrent_turns: int = Field(250, ge=1)
    max_event_loop_lag_ms: float = Field(0, ge=0)
    stream_flush_ms: float = Field(0, ge=0, le=1000)
    auto_title: bool = True

    auth_jwt_secret: SecretStr | None = None
    # Tokens from an identity provider (RS256/ES256), verified against its published keys.
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None

    cors_allow_origins: Annotated[list[str], NoDecode] = []

    log_file: str = "logs/app.log"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("ragflow_dataset_ids", "cors_allow_origins", "database_hosts", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_hosts")
    @classmethod
    def _hosts_with_ports(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, colon, port = entry.rpartition(":")
            if colon and (not host or not port.isdigit() or not 0 < int(port) < 65536):
                raise ValueError(f"{entry!r} is not host or host:port")
        return value

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _read_mcp_servers(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read {text[1:]}: {exc.strerror}") from None
        try:
            return json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg} at character {exc.pos}") from None

    @field_validator("auth_jwt_secret")
    @classmethod
    def _refuse_weak_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _jwks_complete(self) -> Settings:
        if self.auth_jwks_url and not (self.auth_issuer and self.auth_audience):
            raise ValueError(
                "AUTH_JWKS_URL is set, so AUTH_ISSUER and AUTH_AUDIENCE are needed too"
            )
        return self

    @model_validator(mode="after")
    def _tools_in_time(self) -> Settings:
        # a turn waits for the LLM's next piece at most LLM_TIMEOUT_SECONDS, tools included
        if (
            self.agent_grounding == "tools"
            and self.agent_tool_timeout_seconds >= self.llm_timeout_seconds
        ):
            raise ValueError(
                "AGENT_TOOL_TIMEOUT_SECONDS must be less than LLM_TIMEOUT_SECONDS (a turn "
                "waits at most that long for the next piece of its answer, a tool call included)"
            )
        return self

    @model_validator(mode="after")
    def _ragflow_complete(self) -> Settings:
        if self.ragflow_base_url:
            missing = [
                name
                for name, value in (
                    ("RAGFLOW_API_KEY", self.ragflow_api_key),
                    ("RAGFLOW_CHAT_ID", self.ragflow_chat_id),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"RAGFLOW_BASE_URL is set, so {' and '.join(missing)} is needed too"
                )
        return self

    @model_validator(mode="after")
    def _resolve_database_url(self) -> Settings:
        if self.database_url:
            url, hosts = _split_hosts(self.database_url)
            if hosts:  # mysql+aiomysql://user@node1:3306,node2,node3/db
                if self.database_hosts:
                    raise ValueError("DATABASE_URL names several hosts: leave DATABASE_HOSTS unset")
                try:
                    self._hosts_with_ports(hosts)
                except ValueError as exc:
                    raise ValueError(f"DATABASE_URL: {exc}") from None
                object.__setattr__(self, "database_url", url)
                object.__setattr__(self, "database_hosts", hosts)
            return self
        if self.mysql_host:
            if not (self.mysql_user and self.mysql_database):
                raise ValueError(
                    "MYSQL_HOST is set, so MYSQL_USER and MYSQL_DATABASE are needed too"
                )
            password = self.mysql_password.get_secret_value() if self.mysql_password else ""
            auth = quote(self.mysql_user, safe="")
            if password:
                auth += ":" + quote(password, safe="")
            url = (
                f"mysql+aiomysql://{auth}@{self.mysql_host}:{self.mysql_port}/"
                f"{quote(self.mysql_database, safe='')}?charset=utf8mb4"
            )
        else:
            url = DEFAULT_DATABASE_URL
        object.__setattr__(self, "database_url", url)
        return self

    @property
    def dev_mode(self) -> bool:
        """No JWT secret and no JWKS: every request acts as the admin user `dev` (local only)."""
        return self.auth_jwt_secret is None and self.auth_jwks_url is None

    @property
    def database_host_list(self) -> list[tuple[str, int]]:
        """DATABASE_HOSTS as (host, port), the port 3306 unless given."""
        found = []
        for entry in self.database_hosts:
            host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "3306")
            found.append((host, int(port)))
        return found

    @property
    def ragflow_enabled(self) -> bool:
        return bool(self.ragflow_base_url)


def _split_hosts(url: str) -> tuple[str, list[str]]:
    """A URL naming several hosts (`scheme://auth@h1:p1,h2,h3/db`): the URL with the first, and
    the hosts; else the URL as it is and no hosts."""
    scheme, sep, rest = url.partition("://")
    location, slash, path = rest.partition("/")
    auth, at, hosts = location.rpartition("@")
    if not sep or "," not in hosts:
        return url, []
    listed = [host.strip() for host in hosts.split(",") if host.strip()]
    return f"{scheme}://{auth}{at}{listed[0]}{slash}{path}", listed


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation error into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if not error["loc"]:
                problems.append(message)
                continue
            name = str(error["loc"][0]).upper()
            secret = any(word in name for word in ("PASSWORD", "SECRET", "KEY"))
            given = "" if secret or isinstance(error["input"], dict) else f"={error['input']!r}"
            problems.append(f"{name}{given}: {message}")
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None
