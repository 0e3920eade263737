"""`session-service serve | migrate | export | import | token`."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from alembic.util import CommandError as MigrationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from session_service.auth import MAX_USER_ID_LENGTH, is_valid_user_id, mint_token
from session_service.backup import Counts, export, restore
from session_service.backup_lines import BackupError
from session_service.config import ConfigError, Settings, load_settings
from session_service.db.engine import create_engine, create_session_factory, database_url
from session_service.db.migrate import schema_revisions, upgrade_to_head
from session_service.logs import configure_logging

_T = TypeVar("_T")


class CommandError(Exception):
    """Stops the command with one line on stderr and exit status `status`."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        result: int = args.run(args, settings)
    except (ConfigError, CommandError) as exc:
        print(f"session-service: {exc}", file=sys.stderr)
        return exc.status if isinstance(exc, CommandError) else 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-service", description="Chat sessions with pooled LLM agents."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.set_defaults(run=_migrate)

    export = commands.add_parser("export", help="back up sessions and messages as JSON Lines")
    export.add_argument("--user", help="only this user's sessions")
    export.add_argument("--session", help="only this session")
    export.add_argument("--out", required=True, help="the file to write ('-': stdout)")
    export.set_defaults(run=_export)

    restore = commands.add_parser("import", help="restore a file written by export")
    restore.add_argument("file", help="the JSON Lines file")
    restore.set_defaults(run=_import)

    token = commands.add_parser("token", help="mint a JWT for local use")
    token.add_argument("--user", required=True, help="the user id (`sub`)")
    token.add_argument("--admin", action="store_true", help="grant the admin scope")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(run=_token)
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from session_service.agents.workers import WORKERS_DIR_ENV

    if settings.dev_mode and not _is_loopback(args.host):
        raise CommandError(
            f"refusing to listen on {args.host} in development mode (neither AUTH_JWT_SECRET nor "
            "AUTH_JWKS_URL is set): set one, or serve on 127.0.0.1"
        )
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    configure_logging(settings)
    if args.workers > 1:
        # Each worker writes its metrics in the first (/metrics adds them up) and answers the
        # admin routes of the others on a socket in the second; mkdtemp makes them this
        # user's alone, and serve removes them at exit (unless they were given).
        _private_dir("PROMETHEUS_MULTIPROC_DIR", "session-service-metrics-")
        _private_dir(WORKERS_DIR_ENV, "session-service-workers-")
    if database_url(settings.database_url).get_backend_name() == "sqlite":
        # The zero-configuration start: the embedded database migrates itself.
        _migrate(args, settings)
    uvicorn.run(
        "session_service.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        proxy_headers=True,
    )
    return 0


def _private_dir(variable: str, prefix: str) -> None:
    if variable not in os.environ:
        os.environ[variable] = made = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, made, ignore_errors=True)


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    try:
        done = _on_database(settings, upgrade_to_head)
    except (MigrationError, OSError) as exc:
        raise CommandError(f"migrate stopped: {exc}") from None
    shown = _shown(settings)
    if not done.applied:
        print(f"{shown}: already up to date at {done.after}", file=sys.stderr)
        return 0
    if done.before is None:
        print(f"{shown}: created the tables, now at {done.after}", file=sys.stderr)
    else:
        print(f"{shown}: upgraded from {done.before} to {done.after}", file=sys.stderr)
    for revision, description in done.applied:
        print(f"  applied {revision}: {description}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    def export_to(out: IO[str]) -> Counts:
        async def work(engine: AsyncEngine) -> Counts:
            await _require_current_schema(engine, settings)
            return await export(
                create_session_factory(engine),
                out,
                user_id=args.user,
                session_id=args.session,
                progress=sys.stderr.isatty(),
            )

        counts = _on_database(settings, work)
        if args.session is not None and counts.sessions == 0:
            owner = f" of user {args.user}" if args.user is not None else ""
            raise CommandError(f"session {args.session}{owner} not found")
        return counts

    if args.out == "-":
        counts = _export_to_stdout(export_to)
    else:
        counts = _export_to_file(Path(args.out), export_to)
    print(f"exported {counts.sessions} sessions, {counts.messages} messages", file=sys.stderr)
    return 0


def _export_to_stdout(export_to: Callable[[IO[str]], Counts]) -> Counts:
    try:
        counts = export_to(sys.stdout)
        sys.stdout.flush()  # a reader that left early is found out here, not at exit
    except BrokenPipeError:
        # As Python's docs on SIGPIPE advise: stdout goes to devnull, or the flush at exit fails
        # again ("Exception ignored ..."). 128 + SIGPIPE is what `cat` in the same pipe ends with.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CommandError(
            "export stopped: the reader closed the pipe early (broken pipe); it got part of it",
            status=128 + signal.SIGPIPE,
        ) from None
    return counts


def _export_to_file(path: Path, export_to: Callable[[IO[str]], Counts]) -> Counts:
    try:
        out = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with out:
            return export_to(out)
    except BaseException as exc:
        if path.is_file():  # an incomplete backup would import without complaint
            path.unlink()
        if isinstance(exc, OSError):
            raise CommandError(f"export stopped writing {path}: {exc.strerror}") from None
        raise


def _import(args: argparse.Namespace, settings: Settings) -> int:
    async def work(engine: AsyncEngine) -> Counts:
        await _require_current_schema(engine, settings)
        return await restore(
            create_session_factory(engine), Path(args.file), progress=sys.stderr.isatty()
        )

    try:
        counts = _on_database(settings, work)
    except (BackupError, OSError) as exc:
        raise CommandError(f"import stopped: {exc}") from None
    print(
        f"imported {counts.sessions} sessions, {counts.messages} messages; already there: "
        f"{counts.skipped_sessions} sessions, {counts.skipped_messages} messages",
        file=sys.stderr,
    )
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    if settings.auth_jwt_secret is None:
        raise CommandError(
            "AUTH_JWT_SECRET is unset: tokens come from the identity provider (AUTH_JWKS_URL)"
            if settings.auth_jwks_url
            else "AUTH_JWT_SECRET is unset: the service runs in development mode and needs no token"
        )
    if args.ttl < 1:
        raise CommandError("--ttl must be at least 1 second")
    if not is_valid_user_id(args.user):
        # the service refuses such a `sub`, so the token would be useless
        raise CommandError(f"--user must be 1-{MAX_USER_ID_LENGTH} characters of valid UTF-8 text")
    print(
        mint_token(
            settings.auth_jwt_secret.get_secret_value(),
            args.user,
            admin=args.admin,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def _on_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[_T]]) -> _T:
    """`work` on an engine of its own; a database that fails stops the command with one line."""

    async def run() -> _T:
        try:
            engine = create_engine(settings)
        except ArgumentError as exc:  # also an unknown driver (NoSuchModuleError)
            raise CommandError(f"DATABASE_URL: {exc}") from None
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except StatementError as exc:  # the driver's errors, and values a column type refused
        # SQLAlchemy names no statement when the connection itself failed
        problem = "database unavailable" if exc.statement is None else "database error"
        raise CommandError(f"{problem} at {_shown(settings)}: {_reason(exc)}") from None


def _reason(exc: StatementError) -> str:
    """The driver's message, without SQLAlchemy's statement and links, and the system's cause."""
    args = exc.orig.args if exc.orig is not None else ()
    # MySQL drivers say (code, message); sqlite3 says (message,)
    reason = str(args[-1]) if args else type(exc.orig).__name__
    cause = exc.orig.__cause__ if exc.orig is not None else None
    if isinstance(cause, OSError) and cause.errno and os.strerror(cause.errno) not in reason:
        reason += f" ({os.strerror(cause.errno)})"
    return reason


async def _require_current_schema(engine: AsyncEngine, settings: Settings) -> None:
    revisions = await schema_revisions(engine)
    if revisions.current is None:
        raise CommandError(
            f"the database at {_shown(settings)} has no tables yet: "
            "run `session-service migrate` first"
        )
    if revisions.current != revisions.head:
        raise CommandError(
            f"the database at {_shown(settings)} is at schema revision {revisions.current}, "
            f"this installation expects {revisions.head}: run `session-service migrate` first"
        )


def _shown(settings: Settings) -> str:
    return make_url(settings.database_url).render_as_string(hide_password=True)
