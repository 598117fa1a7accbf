"""Domain errors mapped to HTTP status codes in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.inference import InferenceTimeoutError, OverloadedError
from app.validation import BodyValidationError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "1"


class ModelNotReadyError(RuntimeError):
    """The model has not loaded or not passed its self-check yet."""


async def _body_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyValidationError)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    logger.warning(
        "rejected request: overloaded path=%s reason=%s", request.url.path, exc
    )
    return JSONResponse(
        {"detail": f"service overloaded: {exc}; retry later"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


async def _timed_out(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("inference timed out path=%s reason=%s", request.url.path, exc)
    return JSONResponse(
        {"detail": f"{exc}; retry later or send fewer waveforms"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"model not ready: {exc}"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the status code of every domain error."""
    app.add_exception_handler(BodyValidationError, _body_invalid)
    app.add_exception_handler(OverloadedError, _overloaded)
    app.add_exception_handler(InferenceTimeoutError, _timed_out)
    app.add_exception_handler(ModelNotReadyError, _not_ready)
