"""Pure ASGI middleware: request ids and request logs, and the body size limit.

Both classes are plain ASGI callables. Starlette's ``BaseHTTPMiddleware`` would
run the rest of the stack in a separate task and copy each response through a
stream, which costs throughput on every request.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
# Letters, digits and -._: only, so an incoming id can neither split a log line
# nor inject a header when it is sent back.
REQUEST_ID_PATTERN = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % MAX_REQUEST_ID_LENGTH)


class BodyTooLargeError(Exception):
    """The request body grew beyond the limit while it was being read."""


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """Return the request's valid ``X-Request-ID``, or a new random id.

    An id longer than ``MAX_REQUEST_ID_LENGTH`` or with characters other than
    letters, digits and ``-._:`` is replaced, not trimmed.
    """
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if REQUEST_ID_PATTERN.fullmatch(value):
                return value.decode("ascii")
            break
    return secrets.token_hex(16)


def loggable_path(path: str) -> str:
    """Return ``path`` with control characters escaped, so it stays on one line."""
    if path.isprintable():
        return path
    return path.encode("unicode_escape").decode("ascii")


def json_response_messages(
    status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> tuple[Message, Message]:
    """Return the ASGI start and body messages of a ``{"detail": ...}`` response."""
    body = orjson.dumps({"detail": detail})
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class RequestLogMiddleware:
    """Give each HTTP request an id, log one line for it, and turn crashes into 500s.

    The id comes from a valid incoming ``X-Request-ID`` or is generated. It is
    sent back in ``X-Request-ID`` on every response and stored in
    ``request.state.request_id``. The log line carries method, path, status,
    duration_ms and request_id, also as record attributes for the JSON format.
    An exception that escapes the application is logged with its traceback, and
    the client gets a 500 whose body names the request id but not the exception.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        scope.setdefault("state", {})["request_id"] = request_id
        # The server sends a 500 when the application returns without a response.
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            if response_started:
                # Too late for a 500: the server aborts the connection and logs
                # the traceback itself.
                log_request(scope, status, started, request_id, logging.ERROR)
                raise
            log_request(scope, 500, started, request_id, logging.ERROR, crashed=True)
            detail = f"internal server error; request id {request_id}"
            for message in json_response_messages(500, detail, [id_header]):
                await send(message)
            return

        level = logging.INFO if status < 500 else logging.WARNING
        log_request(scope, status, started, request_id, level)


def log_request(
    scope: Scope,
    status: int,
    started: float,
    request_id: str,
    level: int,
    crashed: bool = False,
) -> None:
    """Log one request line; ``crashed`` adds the traceback being handled."""
    if not logger.isEnabledFor(level):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    method = scope["method"]
    path = loggable_path(scope["path"])
    logger.log(
        level,
        "request method=%s path=%s status=%d duration_ms=%.3f request_id=%s",
        method,
        path,
        status,
        duration_ms,
        request_id,
        exc_info=True if crashed else None,
        extra={
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        },
    )


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """Return the request's Content-Length, or None when absent or not a number."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                # The server rejects a malformed Content-Length before the app.
                return None
    return None


class BodySizeLimitMiddleware:
    """Reject request bodies larger than ``max_body_bytes`` with a 413 response.

    A declared Content-Length over the limit is rejected before any of the body
    is read. A body without one (chunked transfer encoding) is counted as the
    application reads it, and reading stops at the first chunk past the limit.
    The 413 carries ``Connection: close`` so the server stops reading the rest.

    NOTE: uvicorn closes without draining the unread body, so a client still
    sending can get a connection reset instead of the 413. A client that sends
    ``Expect: 100-continue`` with a Content-Length over the limit never sends
    the body, because the 100 response only goes out once the body is read.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        detail = (
            f"request body is larger than the limit of {max_body_bytes} bytes "
            "(WAVECLS_MAX_BODY_BYTES); send fewer waveforms per request"
        )
        self.rejection = json_response_messages(
            413, detail, [(b"connection", b"close")]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        length = declared_length(scope["headers"])
        if length is not None and length > self.max_body_bytes:
            await self.reject(send)
            return

        limit = self.max_body_bytes
        received = 0
        response_started = False

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(f"read {received} bytes of at most {limit}")
            return message

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_tracking_start)
        except BodyTooLargeError:
            if response_started:
                raise
            await self.reject(send)

    async def reject(self, send: Send) -> None:
        """Send the 413 response."""
        start, body = self.rejection
        # Outer middleware may change the messages, so each response gets copies.
        await send({**start, "headers": list(start["headers"])})
        await send({**body})
