"""Domain errors mapped to HTTP status codes in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.inference import InferenceTimeoutError, OverloadedError
from app.validation import BodyValidationError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "1"


class ModelNotReadyError(RuntimeError):
    """The model has not loaded or not passed its self-check yet."""


# Every exception type that ``error_response`` maps to a status code.
DOMAIN_ERRORS = (
    BodyValidationError,
    OverloadedError,
    InferenceTimeoutError,
    ModelNotReadyError,
)


@dataclass(frozen=True)
class ErrorResponse:
    """Status code, JSON content and extra headers of a domain error's response."""

    status: int
    content: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_response(exc: Exception, path: str) -> ErrorResponse:
    """Return the response to a domain error raised while serving ``path``.

    Both FastAPI's exception handlers and the /classify shortcut, which
    bypasses FastAPI's routing, respond through this function.

    Raises:
        TypeError: ``exc`` is not one of ``DOMAIN_ERRORS``.
    """
    retry = {"Retry-After": RETRY_AFTER_S}
    if isinstance(exc, BodyValidationError):
        return ErrorResponse(422, {"detail": exc.errors})
    if isinstance(exc, OverloadedError):
        logger.warning("rejected request: overloaded path=%s reason=%s", path, exc)
        return ErrorResponse(
            503, {"detail": f"service overloaded: {exc}; retry later"}, retry
        )
    if isinstance(exc, InferenceTimeoutError):
        logger.warning("inference timed out path=%s reason=%s", path, exc)
        return ErrorResponse(
            503, {"detail": f"{exc}; retry later or send fewer waveforms"}, retry
        )
    if isinstance(exc, ModelNotReadyError):
        return ErrorResponse(503, {"detail": f"model not ready: {exc}"}, retry)
    raise TypeError(f"no status code is defined for {type(exc).__name__}")


async def _handle_domain_error(request: Request, exc: Exception) -> JSONResponse:
    response = error_response(exc, request.url.path)
    return JSONResponse(
        response.content, status_code=response.status, headers=response.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the status code of every domain error."""
    for error_type in DOMAIN_ERRORS:
        app.add_exception_handler(error_type, _handle_domain_error)
