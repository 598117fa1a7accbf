"""Run the service: `python -m app` (settings from WAVECLS_* variables)."""

from __future__ import annotations

import uvicorn

from app.config import get_settings


def main() -> None:
    """Start uvicorn with the host, port, workers and log level from the settings."""
    settings = get_settings()
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # The service logs one line per request itself (app.middleware).
        access_log=False,
    )


if __name__ == "__main__":
    main()
