"""app.client against the service as a real process, and its retry policy.

The retry tests use a stub service on 127.0.0.1: a small Starlette app under
uvicorn that responds 503 a set number of times. It is a test double for the
retry policy only; every other test talks to the real service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.client import Health, WaveclsClient, WaveclsError
from tests.conftest import Server, free_port
from training.data import CLASS_NAMES, INPUT_LENGTH

pytestmark = pytest.mark.slow

PREDICTION = {
    "label": "sine",
    "probabilities": {"sine": 0.98, "square": 0.01, "sawtooth": 0.01},
    "ood_score": -8.0,
    "out_of_distribution": False,
    "model_version": "stub",
}


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[WaveclsClient]:
    """A client of the real service."""
    with WaveclsClient(server.url, timeout=10, retries=2) as wavecls:
        yield wavecls


def test_client_health_reports_live_and_ready(client: WaveclsClient) -> None:
    assert client.health() == Health(live=True, ready=True)


def test_client_model_info_describes_artifact(client: WaveclsClient) -> None:
    info = client.model_info()
    assert info.class_names == list(CLASS_NAMES)
    assert info.input_length == INPUT_LENGTH
    assert info.sha256.startswith(info.version)
    assert info.device == "cpu"


def test_client_generate_is_reproducible(client: WaveclsClient) -> None:
    first = client.generate(type="square", count=2, seed=8, cycles=6, snr_db=30)
    again = client.generate(type="square", count=2, seed=8, cycles=6, snr_db=30)
    assert first == again
    assert first.seed == 8
    assert [example.label for example in first.examples] == ["square", "square"]
    assert all(len(example.waveform) == INPUT_LENGTH for example in first.examples)


def test_client_classify_returns_generated_label(client: WaveclsClient) -> None:
    for kind in CLASS_NAMES:
        example = client.generate(type=kind, seed=3).examples[0]
        prediction = client.classify(example.waveform)
        assert prediction.label == kind
        assert prediction.out_of_distribution is False
        assert set(prediction.probabilities) == set(CLASS_NAMES)
        assert prediction.model_version == client.model_info().version


def test_client_classify_batch_keeps_order(client: WaveclsClient) -> None:
    generated = client.generate(count=12, seed=21)
    predictions = client.classify_batch([e.waveform for e in generated.examples])
    assert [p.label for p in predictions] == [e.label for e in generated.examples]


def test_client_invalid_waveform_raises_with_detail(client: WaveclsClient) -> None:
    with pytest.raises(WaveclsError) as raised:
        client.classify([0.0] * (INPUT_LENGTH - 1))
    assert raised.value.status == 422
    assert isinstance(raised.value.detail, list)
    assert "expected exactly 100 samples, got 99" in str(raised.value)


def test_client_unreachable_service_raises_after_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        WaveclsClient(url, timeout=2, retries=2, backoff_s=0.01) as wavecls,
        pytest.raises(WaveclsError) as raised,
    ):
        wavecls.health()
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert raised.value.status is None
    assert "failed after 3 attempts" in str(raised.value)
    assert len(retries) == 2, [r.getMessage() for r in retries]


@dataclass
class StubService:
    """A stub that counts requests and responds 503 until ``failures`` is used up."""

    failures: int
    retry_after: str | None = "1"
    calls: list[float] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)

    async def classify(self, request: Request) -> JSONResponse:
        """Respond 503 while failures remain, else with one prediction."""
        self.calls.append(time.monotonic())
        self.authorization.append(request.headers.get("authorization"))
        if self.failures > 0:
            self.failures -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return JSONResponse(
                {"detail": "service overloaded; retry later"},
                status_code=503,
                headers=headers,
            )
        return JSONResponse(PREDICTION)

    async def ready(self, request: Request) -> JSONResponse:
        """Respond 503 as a loading service does."""
        self.calls.append(time.monotonic())
        return JSONResponse({"detail": "model not ready"}, status_code=503)

    async def live(self, request: Request) -> JSONResponse:
        """Respond 200."""
        return JSONResponse({"status": "alive"})


@contextmanager
def run_stub(stub: StubService) -> Iterator[str]:
    """Serve ``stub`` with uvicorn on a free 127.0.0.1 port and yield its URL."""
    app = Starlette(
        routes=[
            Route("/classify", stub.classify, methods=["POST"]),
            Route("/health/ready", stub.ready),
            Route("/health/live", stub.live),
        ]
    )
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="stub-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "stub service did not start in 10 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_client_retries_503_after_retry_after() -> None:
    stub = StubService(failures=1, retry_after="1")
    with (
        run_stub(stub) as url,
        WaveclsClient(url, retries=3, token="secret") as wavecls,
    ):
        prediction = wavecls.classify([0.0] * INPUT_LENGTH)

    assert prediction.label == "sine"
    assert len(stub.calls) == 2
    # Retry-After: 1 is longer than the first backoff (0.2 s), so it sets the wait.
    assert stub.calls[1] - stub.calls[0] >= 0.95, stub.calls
    assert stub.authorization == ["Bearer secret", "Bearer secret"]


def test_client_backs_off_exponentially_without_retry_after() -> None:
    stub = StubService(failures=3, retry_after=None)
    with run_stub(stub) as url, WaveclsClient(url, retries=3, backoff_s=0.1) as wavecls:
        wavecls.classify([0.0] * INPUT_LENGTH)

    gaps = [
        later - earlier
        for earlier, later in zip(stub.calls, stub.calls[1:], strict=False)
    ]
    assert len(stub.calls) == 4
    assert gaps[0] >= 0.09, gaps
    assert gaps[1] >= 0.19, gaps
    assert gaps[2] >= 0.39, gaps


def test_client_gives_up_after_bounded_retries() -> None:
    stub = StubService(failures=10, retry_after="0")
    with (
        run_stub(stub) as url,
        WaveclsClient(url, retries=2, backoff_s=0.01) as wavecls,
        pytest.raises(WaveclsError) as raised,
    ):
        wavecls.classify([0.0] * INPUT_LENGTH)

    assert len(stub.calls) == 3
    assert raised.value.status == 503
    assert raised.value.detail == "service overloaded; retry later"


def test_client_without_retries_sends_once() -> None:
    stub = StubService(failures=1)
    with (
        run_stub(stub) as url,
        WaveclsClient(url, retries=0) as wavecls,
        pytest.raises(WaveclsError),
    ):
        wavecls.classify([0.0] * INPUT_LENGTH)
    assert len(stub.calls) == 1


def test_client_health_not_ready_is_not_retried() -> None:
    stub = StubService(failures=0)
    with run_stub(stub) as url, WaveclsClient(url, retries=3) as wavecls:
        health = wavecls.health()
    assert health == Health(live=True, ready=False)
    assert len(stub.calls) == 1
