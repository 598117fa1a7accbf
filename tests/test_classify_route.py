"""POST /classify's shortcut past FastAPI: taken when allowed, same responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.main import create_app
from training.data import INPUT_LENGTH, generate

TOKEN = "route-test-token"
WAVEFORMS = generate(5, 41).waveforms.tolist()
BODIES = [{"waveform": WAVEFORMS[0]}, {"waveforms": WAVEFORMS}]


@pytest.fixture(scope="module")
def token_client(settings: Settings) -> Iterator[TestClient]:
    """A client of an application that requires ``TOKEN``: FastAPI's full path."""
    with_token = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with TestClient(create_app(with_token)) as client:
        yield client


def _refuse_fastapi_path(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(
        self: APIRoute, scope: Scope, receive: Receive, send: Send
    ) -> None:
        raise AssertionError(f"{scope['path']} took FastAPI's path")

    monkeypatch.setattr(APIRoute, "handle", refuse)


@pytest.mark.parametrize("body", BODIES, ids=["single", "batch"])
def test_classify_route_fast_path_serves(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]
) -> None:
    _refuse_fastapi_path(monkeypatch)
    response = client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (BODIES[0], 200),
        (BODIES[1], 200),
        ({"waveform": [0.0] * (INPUT_LENGTH - 1)}, 422),
        ({"waveform": ["a"] * INPUT_LENGTH}, 422),
    ],
    ids=["single", "batch", "short", "strings"],
)
def test_classify_route_paths_answer_alike(
    client: TestClient, token_client: TestClient, body: dict[str, Any], status: int
) -> None:
    fast = client.post("/classify", json=body)
    full = token_client.post(
        "/classify", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert fast.status_code == full.status_code == status, (fast.text, full.text)
    assert fast.json() == full.json()
    assert fast.headers["content-type"] == full.headers["content-type"]


def test_classify_route_token_still_required(token_client: TestClient) -> None:
    response = token_client.post("/classify", json=BODIES[0])
    assert response.status_code == 401, response.text


def test_classify_route_other_method_405(client: TestClient) -> None:
    response = client.get("/classify")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST", response.headers


def test_classify_route_errors_keep_status(client: TestClient) -> None:
    invalid = client.post("/classify", json={"waveform": [0.0] * (INPUT_LENGTH - 1)})
    assert invalid.status_code == 422, invalid.text
    assert "expected exactly 100 samples" in invalid.json()["detail"][0]["msg"]

    app: Any = client.app
    engine, app.state.engine = app.state.engine, None
    try:
        loading = client.post("/classify", json=BODIES[0])
    finally:
        app.state.engine = engine
    assert loading.status_code == 503, loading.text
    assert "not ready" in loading.json()["detail"]


def test_classify_route_skips_fastapi_stack(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail_if_called(
        self: FastAPI, scope: Scope, receive: Receive, send: Send
    ) -> None:
        raise AssertionError(f"{scope['path']} went through FastAPI.__call__")

    monkeypatch.setattr(FastAPI, "__call__", fail_if_called)
    response = client.post(
        "/classify", json=BODIES[0], headers={"X-Request-ID": "shortcut-1"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "shortcut-1", response.headers


def test_classify_route_counted_by_template(client: TestClient) -> None:
    def classify_count() -> float:
        text = client.get("/metrics").text
        prefix = (
            'wavecls_http_requests_total{method="POST",route="/classify",status="200"}'
        )
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = classify_count()
    assert client.post("/classify", json=BODIES[0]).status_code == 200
    assert classify_count() == before + 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"waveform": "\\ud800"}',
        b'{"waveforms": ["\\udfff"]}',
        b'{"waveform": [' + b"0.5, " * (INPUT_LENGTH - 1) + b'"\\ud800"]}',
        b'{"waveform": [0.5], "\\ud800": 1}',
    ],
    ids=["waveform", "batch-member", "sample", "unknown-key"],
)
def test_classify_route_lone_surrogate_422(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/classify", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "\\ud" in response.text, response.text


def test_classify_route_client_disconnect_499(client: TestClient) -> None:
    app: Any = client.app
    messages = [
        {"type": "http.request", "body": b'{"waveform": [', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    client.portal.call(app, scope, receive, send)  # type: ignore[union-attr]

    assert sent == [], sent
    metrics = client.get("/metrics").text
    assert 'route="/classify",status="499"' in metrics, "disconnect not counted"
