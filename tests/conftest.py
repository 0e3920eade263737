"""The suite runs against a real MariaDB/MySQL: a uniquely named database, migrated with the
real alembic scripts, dropped afterwards. TEST_DATABASE_URL picks the server; the default is
the local one (root, empty password). No server means a clear failure, never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pymysql
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from playwright.async_api import Browser, async_playwright
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from session_service.db.engine import create_engine, create_session_factory
from session_service.db.migrate import upgrade_to_head
from session_service.main import create_app
from tests.fakes.openai import FakeLLM
from tests.fakes.ragflow import API_KEY as RAGFLOW_KEY
from tests.fakes.ragflow import CHAT_ID as RAGFLOW_CHAT
from tests.fakes.ragflow import FakeRagflow
from tests.fakes.tcp_proxy import TcpProxy
from tests.helpers import JWT_SECRET, auth, mysql_connect, scratch_database

DEFAULT_SERVER_URL = "mysql+aiomysql://root@127.0.0.1:3306/"
# The chat page's tests drive Debian's headless Chromium through Playwright.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


def _server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER_URL


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh utf8mb4 database on the test server, dropped when the session ends."""
    server = _server_url()
    try:
        mysql_connect(server, connect_timeout=5).close()
    except pymysql.err.OperationalError as exc:
        pytest.exit(
            f"The test suite needs MariaDB/MySQL and none answered at "
            f"{make_url(server).render_as_string(hide_password=True)} ({exc}). Start one "
            "(e.g. `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`) "
            "or point TEST_DATABASE_URL at a server (mysql+aiomysql://user:pass@host:port/).",
            returncode=3,
        )
    with scratch_database(server, "ss_test") as url:
        yield url


@pytest.fixture(scope="session")
async def migrated_url(database_url: str) -> str:
    engine = create_engine(Settings(database_url=database_url))
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
def proxy(migrated_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the test database (tests.fakes.tcp_proxy)."""
    server = make_url(migrated_url)
    tcp = TcpProxy(server.host or "127.0.0.1", server.port or 3306).start()
    try:
        yield tcp
    finally:
        tcp.stop()


@pytest.fixture
def proxied_url(migrated_url: str, proxy: TcpProxy) -> str:
    """The test database's URL through `proxy`."""
    through = make_url(migrated_url).set(host="127.0.0.1", port=proxy.port)
    return through.render_as_string(hide_password=False)


@pytest.fixture
def make_settings(migrated_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": migrated_url,
            "auth_jwt_secret": JWT_SECRET,
            "log_file": str(tmp_path / "app.log"),
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app with its lifespan running, and an HTTP client talking to it in-process."""
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(
            transport=ASGITransport(app=manager.app), base_url="http://test", timeout=60
        ) as client,
    ):
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncClient]:
    async with serve_app(settings) as client:
        yield client


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A fake OpenAI-compatible LLM on a loopback port, fresh for each test."""
    llm = FakeLLM().start()
    try:
        yield llm
    finally:
        llm.stop()


@pytest.fixture
def llm_settings(
    make_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> Callable[..., Settings]:
    """Settings for the app talking to `fake_llm` through langchain-openai. Automatic titles
    are off, so that every call the fake sees is a turn's (tests/test_titles.py turns them
    on)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "llm_provider": "openai",
            "llm_base_url": fake_llm.base_url,
            "llm_api_key": "test-key",
            "llm_timeout_seconds": 10,
            "auto_title": False,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
def fake_ragflow() -> Iterator[FakeRagflow]:
    """A fake RAGFlow on a loopback port, fresh for each test."""
    ragflow = FakeRagflow().start()
    try:
        yield ragflow
    finally:
        ragflow.stop()


@pytest.fixture
def ragflow_settings(
    llm_settings: Callable[..., Settings], fake_ragflow: FakeRagflow
) -> Callable[..., Settings]:
    """Settings for the app with the fake LLM and the fake RAGFlow."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "ragflow_base_url": fake_ragflow.url,
            "ragflow_api_key": RAGFLOW_KEY,
            "ragflow_chat_id": RAGFLOW_CHAT,
            "ragflow_timeout_seconds": 5,
            "ragflow_retry_interval_seconds": 0.2,
        }
        values.update(overrides)
        return llm_settings(**values)

    return make


@pytest.fixture
async def llm_client(llm_settings: Callable[..., Settings]) -> AsyncIterator[AsyncClient]:
    async with serve_app(llm_settings()) as client:
        yield client


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test database, for arranging and checking rows directly."""
    engine = create_engine(Settings(database_url=migrated_url))
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def alice() -> dict[str, str]:
    """Headers of a user no other test knows (tests share one database)."""
    return auth(f"alice-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def bob() -> dict[str, str]:
    return auth(f"bob-{uuid.uuid4().hex[:8]}")
