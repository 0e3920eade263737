"""Logging to stderr and a rotating file, in one format (text or JSON lines), with the
request id (X-Request-ID, from asgi-correlation-id) on every line a request causes."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from asgi_correlation_id import CorrelationIdFilter
from pythonjsonlogger.json import JsonFormatter

from session_service.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(correlation_id)s %(message)s"
_MARK = "_session_service_handler"


def configure_logging(settings: Settings) -> None:
    """Idempotent: a second call (another app in the same process) replaces our handlers."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        path = Path(settings.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
            )
        )
    formatter: logging.Formatter
    if settings.log_format == "json":
        formatter = JsonFormatter(
            JSON_FIELDS,
            rename_fields={"levelname": "level", "asctime": "time", "correlation_id": "request_id"},
        )
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        # "-" outside a request (start-up, the sweep)
        handler.addFilter(CorrelationIdFilter(uuid_length=32, default_value="-"))
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
