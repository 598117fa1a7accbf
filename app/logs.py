"""Logging set-up for the service, as text or JSON lines."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

_CONFIGURED_FLAG = "_wavecls_handler"


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, log_format: str) -> None:
    """Attach one handler to the ``app`` logger; calling it again replaces it."""
    logger = logging.getLogger("app")
    for handler in list(logger.handlers):
        if getattr(handler, _CONFIGURED_FLAG, False):
            logger.removeHandler(handler)

    handler = logging.StreamHandler()
    setattr(handler, _CONFIGURED_FLAG, True)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
