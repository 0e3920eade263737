"""Logging to stderr and a rotating file, in one format."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from session_service.config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
