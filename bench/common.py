"""What the benchmarks share: a scratch database, the service in a subprocess, CPU time,
and writing results to bench/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import httpx
from sqlalchemy.engine import make_url

from tests import helpers
from tests.processes import free_port

RESULTS = Path(__file__).resolve().parent / "results"
SERVER = os.environ.get("TEST_DATABASE_URL") or "mysql+aiomysql://root@127.0.0.1:3306/"


def write_results(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{name}-{stamp}.json"
    document = {
        "benchmark": name,
        "at": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {out}")
    return out


def scratch_database() -> Any:
    """A fresh utf8mb4 database on the benchmark server, dropped afterwards."""
    return helpers.scratch_database(SERVER, "ss_bench")


def aiomysql_options(database_url: str) -> dict[str, Any]:
    """aiomysql's connection arguments for a database URL."""
    url = make_url(database_url)
    return {
        "host": url.host,
        "port": url.port or 3306,
        "user": url.username,
        "password": url.password or "",
        "db": url.database,
        "charset": "utf8mb4",
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def service(
    database_url: str, llm_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm_url,
        "LOG_FILE": "",
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    subprocess.run(
        [sys.executable, "-m", "session_service", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )
    with _running(
        [sys.executable, "-m", "session_service", "serve", "--port", str(port)],
        env,
        port,
        "/health/ready",
    ) as running:
        yield running


def mariadb_pid() -> int | None:
    """The database server's process, to count its CPU time too; None unless it runs here."""
    if make_url(SERVER).host not in (None, "127.0.0.1", "localhost"):
        return None
    # the server's own pid file: other mariadbd processes may run here (a test's cluster)
    connection = helpers.mysql_connect(SERVER)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@pid_file")
            (pid_file,) = cursor.fetchone()
    finally:
        connection.close()
    try:
        return int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return None


@contextmanager
def other_app(app: str, database_url: str, llm_url: str) -> Iterator[tuple[str, int]]:
    """One of the apps we compare with (bench/thin_app.py, bench/alt_apps.py) under uvicorn,
    one worker, like the service."""
    port = free_port()
    env = {
        **os.environ,
        "THIN_DATABASE_URL": database_url,
        "THIN_LLM_URL": llm_url,
        "ALT_DATABASE_URL": database_url,
        "ALT_LLM_URL": llm_url,
    }
    with _running(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"],
        env,
        port,
        "/docs",
    ) as running:
        yield running


@contextmanager
def _running(
    command: list[str], env: dict[str, str], port: int, ready_path: str
) -> Iterator[tuple[str, int]]:
    """Run an HTTP server process until the block ends: (its base URL, its pid)."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base + ready_path)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(10)


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.1)


async def fill(database_url: str, session_id: str, messages: int, *, branches: int = 1) -> None:
    """Store `messages` messages in the session, as `branches` branches of equal length, each
    from a first message of its own (each message the child of the one before it), the last
    branch active: what turns and edits would have stored, written in bulk."""
    length = messages // branches
    connection = await aiomysql.connect(**aiomysql_options(database_url), autocommit=True)
    base = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    async with connection.cursor() as cursor:
        for branch in range(branches):
            first = branch * length + 1
            rows = [
                (
                    session_id,
                    seq,
                    "user" if (seq - first) % 2 == 0 else "assistant",
                    f"stored message {seq}: " + "lorem ipsum " * 6,
                    base + timedelta(seconds=seq),
                )
                for seq in range(first, first + length)
            ]
            for start in range(0, len(rows), 1000):
                await cursor.executemany(
                    "INSERT INTO chat_messages (session_id, seq, role, content, timestamp,"
                    " metadata) VALUES (%s, %s, %s, %s, %s, '{}')",
                    rows[start : start + 1000],
                )
            await cursor.execute(  # the branch's chain of parents
                "UPDATE chat_messages AS m JOIN (SELECT id, LAG(id) OVER (ORDER BY seq) AS up"
                " FROM chat_messages WHERE session_id = %s AND seq BETWEEN %s AND %s) AS x"
                " ON x.id = m.id SET m.parent_id = x.up",
                (session_id, first, first + length - 1),
            )
        await cursor.execute(
            "UPDATE chat_sessions SET message_count = %s, active_message_id = (SELECT id FROM"
            " chat_messages WHERE session_id = %s ORDER BY seq DESC LIMIT 1)"
            " WHERE session_id = %s",
            (branches * length, session_id, session_id),
        )
    connection.close()
