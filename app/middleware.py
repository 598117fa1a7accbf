"""One pure ASGI middleware for every request: id, body limit, metrics and log.

It is a plain ASGI callable. Starlette's ``BaseHTTPMiddleware`` would run the
rest of the stack in a separate task and copy each response through a stream,
which costs throughput on every request. The four jobs share one layer because
each layer wraps ``send`` and ``receive`` again. On a 2-core AMD EPYC VM this
one added 7 us per request to a trivial ASGI app, and the three separate
layers it replaced added 9 to 13 us, both without request log lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from typing import Literal

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import METRICS_PATH, Metrics, route_label, schema_paths

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
# Letters, digits and -._: only, so an incoming id can neither split a log line
# nor inject a header when it is sent back.
REQUEST_ID_PATTERN = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % MAX_REQUEST_ID_LENGTH)
# Status logged and counted, as nginx does, for a request whose client went
# away before the application could respond. It is never sent.
CLIENT_CLOSED_REQUEST = 499
_id_source = random.Random()
# A forked worker reseeds, or it would repeat its parent's ids.
os.register_at_fork(after_in_child=_id_source.seed)


# Log line policy applied by RequestMiddleware: every request, errors only, or none.
RequestLog = Literal["all", "errors", "off"]


class BodyTimeoutError(Exception):
    """The request body did not arrive within the time limit."""


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
    # Ids only correlate log lines, so a fast non-cryptographic generator
    # will do. secrets.token_hex made a system call per request.
    return f"{_id_source.getrandbits(128):032x}"


def loggable_path(path: str) -> str:
    """Return ``path`` with control characters escaped, so it stays on one line."""
    if path.isprintable():
        return path
    return path.encode("unicode_escape").decode("ascii")


def json_messages(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[Message, Message]:
    """Return the ASGI start and body messages of a JSON response ``body``."""
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def json_response_messages(
    status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> tuple[Message, Message]:
    """Return the ASGI start and body messages of a ``{"detail": ...}`` response."""
    return json_messages(status, orjson.dumps({"detail": detail}), headers)


class RequestMiddleware:
    """Give each HTTP request an id, a body size limit, metrics and a log line.

    - The id comes from a valid incoming ``X-Request-ID`` or is generated. It
      is sent back in ``X-Request-ID`` on every response and stored in
      ``request.state.request_id``.
    - A body over ``max_body_bytes`` gets a 413 with ``Connection: close``: at
      once when Content-Length declares it, else at the first chunk past the
      limit, and the application stops reading. A body whose next part does
      not arrive within ``body_timeout_s`` gets a 408, also with
      ``Connection: close``.
    - Every request is counted by method, route template and status, and all
      but /metrics are timed and counted in flight.
    - ``request_log`` chooses which requests get a log line: ``all``,
      ``errors`` (status 400 and above) or ``off``. The line carries method,
      path, status, duration_ms and request_id, also as record attributes for
      the JSON format.
    - An exception that escapes the application is always logged with its
      traceback, and the client gets a 500 whose body names the request id but
      not the exception.

    Lifespan messages pass through; at ``lifespan.startup.complete`` the
    metrics start following the engine, and at shutdown they let it go.

    NOTE: uvicorn closes without draining the unread body of a 413, so a
    client still sending can get a connection reset instead of the 413. A
    client that sends ``Expect: 100-continue`` with a Content-Length over the
    limit never sends the body, because the 100 response only goes out once
    the body is read.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        request_log: RequestLog = "all",
        body_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.timeout_detail = (
            f"request body did not arrive within {body_timeout_s:g} s "
            "(WAVECLS_BODY_TIMEOUT_S); send the whole body at once"
        )
        # Lowest status that gets a log line; above any status when "off".
        self.min_logged_status = {"all": 0, "errors": 400, "off": 1000}[request_log]
        detail = (
            f"request body is larger than the limit of {max_body_bytes} bytes "
            "(WAVECLS_MAX_BODY_BYTES); send fewer waveforms per request"
        )
        self.rejection = json_response_messages(
            413, detail, [(b"connection", b"close")]
        )
        self._schema_paths: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._handle_lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        scope.setdefault("state", {})["request_id"] = request_id
        limit = self.max_body_bytes
        received = 0
        body_pending = True
        # The server sends a 500 when the application returns without a response.
        status = 500
        response_started = False

        async def receive_within_limit() -> Message:
            nonlocal received, body_pending
            if body_pending:
                message = await self._receive_body_part(receive)
            else:
                # After the body, receive() only waits for the disconnect.
                message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(f"read {received} bytes of at most {limit}")
                body_pending = message.get("more_body", False)
            else:
                body_pending = False
            return message

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        timed = scope["path"] != METRICS_PATH
        if timed:
            self.metrics.in_flight.inc()
        try:
            length = declared_length(scope["headers"])
            if length is not None and length > limit:
                await self.reject(send_with_request_id)
            else:
                await self.app(scope, receive_within_limit, send_with_request_id)
        except BodyTooLargeError:
            if response_started:
                log_request(scope, status, started, request_id, logging.ERROR)
                raise
            await self.reject(send_with_request_id)
        except BodyTimeoutError:
            if response_started:
                log_request(scope, status, started, request_id, logging.ERROR)
                raise
            status = 408
            for message in json_response_messages(
                408, self.timeout_detail, [(b"connection", b"close"), id_header]
            ):
                await send(message)
        except ClientDisconnect:
            # The client is gone, so no response is sent. nginx logs 499 here.
            status = CLIENT_CLOSED_REQUEST
        except Exception:
            if response_started:
                # Too late for a 500: the server aborts the connection and logs
                # the traceback itself.
                log_request(scope, status, started, request_id, logging.ERROR)
                raise
            status = 500
            log_request(scope, 500, started, request_id, logging.ERROR, crashed=True)
            detail = f"internal server error; request id {request_id}"
            for message in json_response_messages(500, detail, [id_header]):
                await send(message)
            return
        finally:
            self._observe(scope, status, started, timed)

        if status >= self.min_logged_status:
            level = logging.INFO if status < 500 else logging.WARNING
            log_request(scope, status, started, request_id, level)

    def _observe(self, scope: Scope, status: int, started: float, timed: bool) -> None:
        if self._schema_paths is None and scope.get("route") is None:
            self._schema_paths = schema_paths(scope.get("app"))
        route = route_label(scope, self._schema_paths or frozenset())
        self.metrics.observe_request(
            scope["method"], route, status, time.perf_counter() - started, timed
        )

    async def _receive_body_part(self, receive: Receive) -> Message:
        # A timer that cancels this task costs a few microseconds per request;
        # asyncio.timeout() cost about 20 (``python -m bench.inprocess``).
        task = asyncio.current_task()
        if task is None:
            return await receive()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.body_timeout_s, expire)
        try:
            return await receive()
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise BodyTimeoutError(self.timeout_detail) from None
            raise
        finally:
            timer.cancel()

    async def reject(self, send: Send) -> None:
        """Send the 413 response."""
        start, body = self.rejection
        # Each response gets copies, because ``send`` adds a header to them.
        await send({**start, "headers": list(start["headers"])})
        await send({**body})

    async def _handle_lifespan(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        async def send_following_engine(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                engine = getattr(scope["app"].state, "engine", None)
                if engine is not None:
                    self.metrics.observe_engine(engine)
                # Building the schema took 0.17 s on a shared 2-core VM, so it
                # happens before the first request rather than during one.
                self._schema_paths = schema_paths(scope["app"])
            elif message["type"] == "lifespan.shutdown.complete":
                self.metrics.forget_engine()
            await send(message)

        await self.app(scope, receive, send_following_engine)


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
