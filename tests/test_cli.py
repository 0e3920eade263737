"""The console script as a user runs it: serve with no configuration, migrate, token, and
every failure told in one line on stderr, without a traceback."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from session_service.auth import MAX_USER_ID_LENGTH
from session_service.db.migrate import alembic_config
from tests.helpers import JWT_SECRET, mysql_connect, scratch_database
from tests.processes import CLI, clean_env, serving

REVISIONS = [
    script.revision
    for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
]  # oldest first
SESSION: dict[str, object] = {  # a session's line in a backup
    "type": "session",
    "format": "session-service/1",
    "session_id": "cli-test",
    "user_id": "u",
    "title": "t",
    "context": {},
    "ragflow_session_id": None,
    "ragflow_chat_id": None,
    "created_at": "2026-11-24T00:00:00+00:00",
    "updated_at": "2026-11-24T00:00:00+00:00",
}


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CLI + args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def one_line(stderr: str) -> str:
    """The single line a failed command wrote on stderr."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def applied(stderr: str) -> list[str]:
    """The revisions `migrate` says it applied, in its order."""
    return [line.split()[1].rstrip(":") for line in stderr.splitlines() if "  applied " in line]


def test_bad_setting_stops_start_with_one_line(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, AGENT_POOL_MAX_SIZE="abc")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "AGENT_POOL_MAX_SIZE" in lines[0]
    assert "'abc'" in lines[0]


def test_bad_setting_in_env_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TURN_LOCK_TIMEOUT_SECONDS=soon\n")
    result = run(["migrate"], tmp_path)
    assert result.returncode == 2
    assert "TURN_LOCK_TIMEOUT_SECONDS" in result.stderr


def test_short_jwt_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, AUTH_JWT_SECRET="changeme")
    assert result.returncode == 2
    assert "AUTH_JWT_SECRET" in result.stderr
    assert "changeme" not in result.stderr


def test_development_mode_refuses_a_public_address(tmp_path: Path) -> None:
    result = run(["serve", "--host", "0.0.0.0"], tmp_path)
    assert result.returncode == 2
    assert "development mode" in result.stderr


def test_token_without_a_secret_explains(tmp_path: Path) -> None:
    result = run(["token", "--user", "u"], tmp_path)
    assert result.returncode == 2
    assert "AUTH_JWT_SECRET" in result.stderr
    assert "development mode" in result.stderr
    provider = {
        "AUTH_JWKS_URL": "http://127.0.0.1:9/jwks",
        "AUTH_ISSUER": "https://idp.example",
        "AUTH_AUDIENCE": "chat",
    }
    with_provider = run(["token", "--user", "u"], tmp_path, **provider)
    assert with_provider.returncode == 2
    assert "identity provider" in with_provider.stderr


def test_token_is_accepted_by_the_service(tmp_path: Path) -> None:
    token = run(
        ["token", "--user", "zed", "--admin", "--ttl", "600"], tmp_path, AUTH_JWT_SECRET=JWT_SECRET
    )
    assert token.returncode == 0, token.stderr
    with serving(tmp_path, AUTH_JWT_SECRET=JWT_SECRET) as server:
        base = server.base
        created = httpx.post(
            f"{base}/api/sessions",
            json={},
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        )
        anonymous = httpx.get(f"{base}/api/sessions")
    assert created.status_code == 201
    assert created.json()["user_id"] == "zed"
    assert anonymous.status_code == 401


def test_migrate_from_another_directory(tmp_path: Path, database_url: str) -> None:
    # a latin1 database: the tables must come out utf8mb4 all the same
    with scratch_database(database_url, "ss_migrate", charset="latin1") as url:
        first = run(["migrate"], tmp_path, DATABASE_URL=url)
        assert first.returncode == 0, first.stderr
        assert f"created the tables, now at {REVISIONS[-1]}" in first.stderr
        assert applied(first.stderr) == REVISIONS
        again = run(["migrate"], tmp_path, DATABASE_URL=url)
        assert again.returncode == 0, again.stderr
        assert f"already up to date at {REVISIONS[-1]}" in again.stderr
        with mysql_connect(url) as connection, connection.cursor() as cursor:
            name = make_url(url).database
            cursor.execute(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = %s ORDER BY table_name",
                (name,),
            )
            tables = dict(cursor.fetchall())
            cursor.execute(
                "SELECT column_name, data_type, datetime_precision FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'chat_messages'",
                (name,),
            )
            columns = {row[0]: row[1:] for row in cursor.fetchall()}
    assert set(tables) == {
        "alembic_version",
        "chat_sessions",
        "chat_messages",
        "ragflow_deletions",
        "audit_events",
        "message_feedback",
        "search_terms",
    }
    assert tables["chat_sessions"].startswith("utf8mb4")
    assert tables["chat_messages"].startswith("utf8mb4")
    assert tables["search_terms"] == "utf8mb4_bin"  # terms compare exactly, as folded
    assert columns["content"][0] == "mediumtext"
    assert columns["timestamp"] == ("datetime", 6)


def test_serve_with_no_configuration(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        created = httpx.post(f"{server.base}/api/sessions", json={"title": "hello 𝄞"})
        assert created.status_code == 201
        assert created.json()["user_id"] == "dev"
        session_id = created.json()["session_id"]
        answered = httpx.post(
            f"{server.base}/api/sessions/{session_id}/messages", json={"content": "hi 😀"}
        )
        assert answered.status_code == 201
        assert "offline" in answered.json()["assistant_message"]["content"]
        listed = httpx.get(f"{server.base}/api/sessions").json()
        assert [item["title"] for item in listed["items"]] == ["hello 𝄞"]
        assert listed["items"][0]["message_count"] == 2
        assert httpx.get(f"{server.base}/docs").status_code == 200
        assert "/api/sessions" in httpx.get(f"{server.base}/openapi.json").json()["paths"]
    assert (tmp_path / "data" / "sessions.db").is_file()
    assert "DEVELOPMENT MODE" in server.output
    assert "session created" in (tmp_path / "logs" / "app.log").read_text()


def test_migrate_from_the_built_wheel(tmp_path: Path) -> None:
    """The migration scripts ship inside the wheel, so an installed package can migrate."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(root),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    [wheel] = (tmp_path / "dist").glob("session_service-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "installed")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [*CLI, "migrate"],
        cwd=workdir,
        env=clean_env(PYTHONPATH=str(tmp_path / "installed")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (
        str(tmp_path / "installed")
        in subprocess.run(
            [
                sys.executable,
                "-c",
                "import session_service.db.migrate as m; print(m.migrations_dir())",
            ],
            env=clean_env(PYTHONPATH=str(tmp_path / "installed")),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert (workdir / "data" / "sessions.db").stat().st_size > 0


def test_migrate_names_the_revisions_it_applies(tmp_path: Path, database_url: str) -> None:
    with scratch_database(database_url, "ss_upgrade") as url:
        config = alembic_config()
        config.set_main_option("sqlalchemy.url", url)
        middle = REVISIONS[len(REVISIONS) // 2]
        command.upgrade(config, middle)  # an older installation's schema
        result = run(["migrate"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith(f"upgraded from {middle} to {REVISIONS[-1]}")
    assert applied(result.stderr) == REVISIONS[REVISIONS.index(middle) + 1 :]


def test_migrate_into_a_database_that_does_not_exist(tmp_path: Path, database_url: str) -> None:
    url = make_url(database_url).set(database="ss_nosuchdb").render_as_string(False)
    result = run(["migrate"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "database unavailable at" in line
    assert "Unknown database 'ss_nosuchdb'" in line


@pytest.mark.parametrize(
    "args",
    [["migrate"], ["export", "--out", "-"], ["import", "backup.jsonl"]],
    ids=["migrate", "export", "import"],
)
def test_a_dead_database_port_is_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "backup.jsonl").write_text(json.dumps(SESSION) + "\n")
    url = "mysql+aiomysql://root:hunter2@127.0.0.1:1/sessions"
    result = run(args, tmp_path, DATABASE_URL=url, DB_CONNECT_TIMEOUT_SECONDS="5")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "database unavailable at mysql+aiomysql://root:***@127.0.0.1:1/sessions" in line
    assert "Can't connect" in line
    assert "hunter2" not in result.stderr


def test_migrate_stops_at_a_revision_it_does_not_know(tmp_path: Path, database_url: str) -> None:
    with scratch_database(database_url, "ss_newer") as url:
        with mysql_connect(url, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            cursor.execute("INSERT INTO alembic_version VALUES ('from_the_future')")
        result = run(["migrate"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 2
    assert "from_the_future" in one_line(result.stderr)


def test_import_into_an_unmigrated_database(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "backup.jsonl").write_text("")
    with scratch_database(database_url, "ss_empty") as url:
        result = run(["import", "backup.jsonl"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "has no tables yet" in line
    assert "run `session-service migrate` first" in line


@pytest.mark.parametrize(
    ("record", "cause"),
    [
        (
            {"type": "session", "format": "session-service/1", "session_id": "s"},
            "line 1: a session without user_id",
        ),
        ({**SESSION, "created_at": "yesterday"}, "line 1: created_at is not an ISO 8601 time"),
        ({**SESSION, "updated_at": "2026-11-24T00:00:00"}, "line 1: updated_at has no time zone"),
        ({**SESSION, "title": "\ud800"}, "line 1 is not JSON the service can store"),
        ({**SESSION, "context": {"x": float("nan")}}, "line 1 is not JSON the service can store"),
        ({**SESSION, "session_id": "bad id"}, "line 1: session_id 'bad id' is not"),
        ({**SESSION, "title": "  "}, "line 1: title must be"),
        ({**SESSION, "ragflow_chat_id": {"a": 1}}, "line 1: ragflow_chat_id must be null or"),
        ({**SESSION, "ragflow_session_id": "x" * 65}, "line 1: ragflow_session_id must be"),
    ],
    ids=[
        "missing-field",
        "bad-time",
        "naive-time",
        "surrogate",
        "nan",
        "bad-id",
        "blank-title",
        "bad-chat-id",
        "long-mirror-id",
    ],
)
def test_import_of_a_bad_record(
    tmp_path: Path, migrated_url: str, record: dict[str, object], cause: str
) -> None:
    (tmp_path / "backup.jsonl").write_text(json.dumps(record) + "\n")
    result = run(["import", "backup.jsonl"], tmp_path, DATABASE_URL=migrated_url)
    assert result.returncode == 2
    assert cause in one_line(result.stderr)


def test_export_of_a_session_that_does_not_exist(tmp_path: Path, migrated_url: str) -> None:
    out = tmp_path / "backup.jsonl"
    result = run(
        ["export", "--session", "no-such-session", "--out", str(out)],
        tmp_path,
        DATABASE_URL=migrated_url,
    )
    assert result.returncode == 2
    assert "session no-such-session not found" in one_line(result.stderr)
    assert not out.exists()  # no empty file that looks like a backup
    # a user with no sessions is not an error: there is just nothing of theirs
    nobody = run(["export", "--user", "nobody", "--out", "-"], tmp_path, DATABASE_URL=migrated_url)
    assert nobody.returncode == 0, nobody.stderr
    assert nobody.stdout == ""
    assert "exported 0 sessions, 0 messages" in nobody.stderr


def test_export_into_a_pipe_closed_early(tmp_path: Path, database_url: str) -> None:
    """`export | head -1`: far more than the pipe holds, so the export meets a closed pipe."""
    messages = [
        {
            "type": "message",
            "session_id": SESSION["session_id"],
            "id": seq,
            "seq": seq,
            "role": "user" if seq % 2 else "assistant",
            "content": "x" * 4000,
            "timestamp": "2026-11-24T00:00:00+00:00",
            "client_message_id": None,
            "metadata": {},
        }
        for seq in range(1, 201)
    ]  # 800 kB, the pipe holds 64 kB
    backup = tmp_path / "backup.jsonl"
    backup.write_text("".join(json.dumps(r) + "\n" for r in [SESSION, *messages]))
    with scratch_database(database_url, "ss_pipe") as url:
        assert run(["migrate"], tmp_path, DATABASE_URL=url).returncode == 0
        imported = run(["import", str(backup)], tmp_path, DATABASE_URL=url)
        assert imported.returncode == 0, imported.stderr
        piped = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {shlex.join(CLI)} export --out - 2>err | head -1"],
            cwd=tmp_path,
            env=clean_env(DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=60,
        )
    # a file of the first format, exported in the second: the tree's one branch is active
    assert json.loads(piped.stdout) == {
        **SESSION,
        "format": "session-service/2",
        "active_message_id": messages[-1]["id"],
        "archived": False,
        "pinned": False,
        "titled": True,
    }
    assert piped.returncode == 141  # 128 + SIGPIPE, as `cat` in its place would end
    stderr = (tmp_path / "err").read_text()
    assert "Exception ignored" not in stderr
    assert "broken pipe" in one_line(stderr)


@pytest.mark.parametrize(
    "user",
    ["", "u" * (MAX_USER_ID_LENGTH + 1), "\udcff"],  # the last: the byte 0xff, not UTF-8
    ids=["empty", "too-long", "not-utf8"],
)
def test_token_refuses_a_user_id_the_service_would_refuse(tmp_path: Path, user: str) -> None:
    result = run(["token", "--user", user], tmp_path, AUTH_JWT_SECRET=JWT_SECRET)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"--user must be 1-{MAX_USER_ID_LENGTH} characters" in one_line(result.stderr)
    longest = run(
        ["token", "--user", "u" * MAX_USER_ID_LENGTH], tmp_path, AUTH_JWT_SECRET=JWT_SECRET
    )
    assert longest.returncode == 0, longest.stderr
