"""Request body size limit, queue bound and inference time limit, through HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import select
import socket
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.inference import InferenceEngine, Predictions
from app.main import create_app
from app.metrics import Metrics
from app.middleware import RequestMiddleware
from tests.conftest import Server
from tests.test_observability import sample, scrape
from training.data import INPUT_LENGTH

LIMIT = 1024


def waveforms(count: int) -> dict[str, list[list[float]]]:
    """Return a /classify body with ``count`` sine waveforms."""
    time_axis = np.linspace(0, 2 * np.pi * 5, INPUT_LENGTH, endpoint=False)
    return {"waveforms": [np.sin(time_axis).tolist()] * count}


# Body size limit, on the middleware itself


class AsgiRecorder:
    """An ASGI receive/send pair that records what passes through it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.receive_calls = 0
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.receive_calls += 1
        body = self.chunks.pop(0) if self.chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    def status(self) -> int:
        return int(self.sent[0]["status"])

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def read_whole_body(scope: Any, receive: Any, send: Any) -> None:
    """Read the entire body like ``request.body()``, then respond with 200."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read"})


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Return a minimal ASGI HTTP scope for a POST."""
    return {"type": "http", "method": "POST", "path": "/classify", "headers": headers}


def test_body_limit_rejects_declared_length_unread() -> None:
    app_calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        app_calls.append("called")

    recorder = AsgiRecorder([b"x" * 10])
    middleware = RequestMiddleware(app, Metrics(), LIMIT)
    headers = [(b"content-length", str(LIMIT + 1).encode())]
    asyncio.run(middleware(http_scope(headers), recorder.receive, recorder.send))

    assert recorder.status() == 413, recorder.sent
    assert recorder.receive_calls == 0, "the body was read before rejecting it"
    assert app_calls == [], "the application ran for an oversized body"
    assert recorder.headers()[b"connection"] == b"close", recorder.headers()
    assert f"{LIMIT} bytes" in recorder.json()["detail"], recorder.json()


def test_body_limit_stops_reading_chunked_body() -> None:
    # No Content-Length: chunks of 400 bytes pass 1024 on the third.
    recorder = AsgiRecorder([b"x" * 400] * 10)
    middleware = RequestMiddleware(read_whole_body, Metrics(), LIMIT)
    asyncio.run(middleware(http_scope([]), recorder.receive, recorder.send))

    assert recorder.status() == 413, recorder.sent
    assert recorder.receive_calls == 3, f"read {recorder.receive_calls} chunks"
    assert len(recorder.sent) == 2, recorder.sent
    assert f"{LIMIT} bytes" in recorder.json()["detail"], recorder.json()


@pytest.mark.parametrize(
    "chunks", [[b"x" * LIMIT], [b"x" * 512, b"x" * 512], [b""], [b"x" * 1000]]
)
def test_body_limit_passes_body_within_limit(chunks: list[bytes]) -> None:
    recorder = AsgiRecorder(chunks)
    middleware = RequestMiddleware(read_whole_body, Metrics(), LIMIT)
    asyncio.run(middleware(http_scope([]), recorder.receive, recorder.send))
    assert recorder.status() == 200, recorder.sent


def test_body_limit_ignores_non_http_scope() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = RequestMiddleware(app, Metrics(), LIMIT)
    recorder = AsgiRecorder([])
    asyncio.run(middleware({"type": "lifespan"}, recorder.receive, recorder.send))
    assert seen == ["lifespan"]


# Body size limit, through the application


@pytest.fixture(scope="module")
def small_body_client(settings: Settings) -> Iterator[TestClient]:
    """A client of an application that accepts bodies of at most ``LIMIT`` bytes."""
    app = create_app(settings.model_copy(update={"max_body_bytes": LIMIT}))
    with TestClient(app) as client:
        yield client


def test_classify_body_at_limit_is_read(small_body_client: TestClient) -> None:
    body = b"[" + b" " * (LIMIT - 2) + b"]"
    response = small_body_client.post("/classify", content=body)
    assert response.status_code == 422, response.text


def test_classify_body_over_limit_413(small_body_client: TestClient) -> None:
    response = small_body_client.post("/classify", content=b" " * (LIMIT + 1))
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert f"limit of {LIMIT} bytes" in detail, detail
    assert "WAVECLS_MAX_BODY_BYTES" in detail, detail


def test_classify_chunked_body_over_limit_413(small_body_client: TestClient) -> None:
    chunks = iter([b" " * 600, b" " * 600])
    response = small_body_client.post("/classify", content=chunks)
    assert response.status_code == 413, response.text
    assert f"limit of {LIMIT} bytes" in response.json()["detail"], response.text


def test_body_limit_413_counted_under_route(small_body_client: TestClient) -> None:
    before = scrape(small_body_client)
    small_body_client.post("/classify", content=b" " * (LIMIT + 1))
    after = scrape(small_body_client)
    labels = {"method": "POST", "route": "/classify", "status": "413"}
    counted = sample(after, "wavecls_http_requests_total", **labels) - sample(
        before, "wavecls_http_requests_total", **labels
    )
    assert counted == 1, f"413 counted {counted} times under /classify"


# Body size limit, against a real uvicorn process


def _read_response_head(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            # The server closed with unread body data, which sends a reset
            # after the response it already wrote.
            break
        if not chunk:
            break
        data += chunk
    return data


def _connect(server: Server) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=5)


@pytest.mark.slow
def test_server_chunked_body_over_limit_413(server: Server) -> None:
    limit = Settings().max_body_bytes
    ceiling = 8 * limit  # the client gives up after sending this much
    chunk = b" " * 65536
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    with _connect(server) as sock:
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"X-Request-ID: chunked-413\r\n\r\n"
        )
        sent = 0
        answered = False
        while sent < ceiling and not answered:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            answered = bool(readable)
            if writable and not answered:
                try:
                    sock.sendall(framed)
                except (BrokenPipeError, ConnectionResetError):
                    # Closed after the 413 while this chunk was on its way.
                    answered = True
                sent += len(chunk)
        head = _read_response_head(sock)

    assert answered, f"no response after streaming {sent} bytes"
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"x-request-id: chunked-413" in head, head
    assert b"connection: close" in head, head
    # Socket buffers hold some megabytes, but the server stopped at the limit.
    assert sent < ceiling, f"the server read all {sent} bytes before answering"
    ready = httpx.get(f"{server.url}/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text


@pytest.mark.slow
def test_server_declared_length_over_limit_413(server: Server) -> None:
    with _connect(server) as sock:
        # With Expect: 100-continue the client sends no body
        # until the server requests it.
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
        )
        started = time.monotonic()
        head = _read_response_head(sock)
        elapsed = time.monotonic() - started

    assert head.startswith(b"HTTP/1.1 413"), f"expected 413, not 100 Continue: {head}"
    assert b"x-request-id: " in head, head
    assert elapsed < 2, f"the 413 for 1 GiB unsent took {elapsed:.2f} s"


# Queue bound and time limit


class GatedForwardPass:
    """Hold the engine's forward passes until ``release`` is called.

    Replaces ``engine.run_sync`` on the instance: the worker thread enters the
    wrapper, signals ``entered`` and waits for the gate before running the model.
    """

    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self.original = engine.run_sync
        self.entered = threading.Event()
        self.gate = threading.Event()
        engine.run_sync = self.run  # type: ignore[method-assign,assignment]

    def run(self, inputs: np.ndarray) -> Predictions:
        self.entered.set()
        # The timeout only keeps a failing test from hanging the worker.
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never released the forward pass")
        return self.original(inputs)

    def release(self) -> None:
        self.gate.set()


@contextmanager
def gated_client(
    settings: Settings, **overrides: Any
) -> Iterator[tuple[TestClient, GatedForwardPass]]:
    """Start an application whose forward passes wait for the test's release.

    One inference thread and no inline passes, so that a held pass blocks the
    whole engine but never the event loop.
    """
    engine_settings = {"inference_threads": 1, "inline_max_waveforms": 0}
    app = create_app(settings.model_copy(update={**engine_settings, **overrides}))
    with TestClient(app) as client:
        gated = GatedForwardPass(app.state.engine)
        try:
            yield client, gated
        finally:
            gated.release()


def wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_classify_over_queue_bound_503(settings: Settings) -> None:
    """A full queue rejects with 503; ``engine.run_sync`` is gated to hold it full."""
    with (
        gated_client(settings, max_queued_waveforms=4, batch_max_waveforms=4) as (
            client,
            gated,
        ),
        concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool,
    ):
        engine = gated.engine
        running = pool.submit(client.post, "/classify", json=waveforms(1))
        assert gated.entered.wait(10), "the first forward pass never started"
        queued = pool.submit(client.post, "/classify", json=waveforms(4))
        wait_until(lambda: engine.queued_waveforms == 4)

        rejected = client.post("/classify", json=waveforms(1))
        gated.release()
        accepted = [running.result(10), queued.result(10)]

        assert rejected.status_code == 503, rejected.text
        assert rejected.headers["retry-after"] == "1", rejected.headers
        detail = rejected.json()["detail"]
        assert "4 waveforms are queued; the limit is 4" in detail, detail
        for response in accepted:
            assert response.status_code == 200, response.text
        overloaded = sample(
            scrape(client),
            "wavecls_http_requests_total",
            method="POST",
            route="/classify",
            status="503",
        )
        assert overloaded == 1, f"503s counted {overloaded}"


def test_classify_burst_keeps_queue_bounded(settings: Settings) -> None:
    """A burst never queues past the bound; ``engine.run_sync`` is gated meanwhile."""
    bound, per_request, requests = 16, 4, 40
    with (
        gated_client(settings, max_queued_waveforms=bound, batch_max_waveforms=4) as (
            client,
            gated,
        ),
        concurrent.futures.ThreadPoolExecutor(max_workers=requests) as pool,
    ):
        engine = gated.engine
        peak = 0
        sampling = True

        def sample_queue() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, engine.queued_waveforms)
                time.sleep(0.0005)

        sampler = threading.Thread(target=sample_queue)
        sampler.start()
        try:
            futures = [
                pool.submit(client.post, "/classify", json=waveforms(per_request))
                for _ in range(requests)
            ]
            # One request is in the held forward pass and four fill the queue;
            # the other 35 are rejected at once.
            wait_until(lambda: sum(f.done() for f in futures) == requests - 5)
            held = engine.queued_waveforms
            gated.release()
            responses = [future.result(30) for future in futures]
        finally:
            sampling = False
            sampler.join()

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) == 5, statuses
    assert statuses.count(503) == requests - 5, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1", response.headers
    assert held == bound, f"{held} waveforms queued with a bound of {bound}"
    assert peak <= bound, f"{peak} waveforms queued with a bound of {bound}"


def test_classify_inference_timeout_503(settings: Settings) -> None:
    """A forward pass past the time limit gives 503; ``engine.run_sync`` is gated."""
    with gated_client(settings, inference_timeout_s=0.2) as (client, gated):
        started = time.monotonic()
        response = client.post("/classify", json=waveforms(2))
        elapsed = time.monotonic() - started
        gated.release()

        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1", response.headers
        detail = response.json()["detail"]
        assert "did not finish within 0.2 s" in detail, detail
        assert elapsed < 5, f"the timed-out request took {elapsed:.2f} s"
        after = client.post("/classify", json=waveforms(1))
        assert after.status_code == 200, after.text


# Body time limit


def test_body_timeout_408_for_stalled_body() -> None:
    parts = [{"type": "http.request", "body": b'{"wave', "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return parts.pop(0)
        await asyncio.Event().wait()  # the client stalls
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = RequestMiddleware(
        read_whole_body, Metrics(), LIMIT, body_timeout_s=0.05
    )
    headers = [(b"x-request-id", b"stall-1")]
    asyncio.run(middleware(http_scope(headers), receive, send))

    assert sent[0]["status"] == 408, sent
    response_headers = dict(sent[0]["headers"])
    assert response_headers[b"connection"] == b"close", response_headers
    assert response_headers[b"x-request-id"] == b"stall-1", response_headers
    assert "WAVECLS_BODY_TIMEOUT_S" in json.loads(sent[1]["body"])["detail"]


def test_body_timeout_spares_wait_after_body() -> None:
    # Once the body is complete, receive() only waits for the disconnect, as
    # streaming responses do; that wait must not get a 408.
    parts = [{"type": "http.request", "body": b"{}", "more_body": False}]
    outcome: list[str] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return parts.pop(0)
        await asyncio.sleep(0.2)
        return {"type": "http.disconnect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        outcome.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = RequestMiddleware(app, Metrics(), LIMIT, body_timeout_s=0.05)
    asyncio.run(middleware(http_scope([]), receive, send))

    assert outcome == ["http.disconnect"], outcome
    assert sent[0]["status"] == 200, sent
