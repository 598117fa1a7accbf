"""Optional bearer-token authentication of /classify and /generate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from training.data import INPUT_LENGTH

TOKEN = "wavecls-T0ken_for.tests~+/=="
PROTECTED = [("POST", "/classify"), ("GET", "/generate")]
OPEN = [
    "/health/live",
    "/health/ready",
    "/model",
    "/metrics",
    "/docs",
    "/openapi.json",
]
WAVEFORM = {"waveform": [float(i % 10 < 5) for i in range(INPUT_LENGTH)]}


def with_token(settings: Settings, token: str) -> Settings:
    """Return ``settings`` with ``WAVECLS_API_TOKEN`` set to ``token``."""
    return settings.model_copy(update={"api_token": SecretStr(token)})


def call(
    client: TestClient,
    method: str,
    path: str,
    headers: dict[str, str] | dict[str, bytes] | None = None,
) -> Any:
    """Send a valid request to ``path``, with ``headers``."""
    body = WAVEFORM if method == "POST" else None
    return client.request(method, path, json=body, headers=headers)


@pytest.fixture(scope="module")
def token_client(settings: Settings) -> Iterator[TestClient]:
    """A client of an application that requires ``TOKEN``."""
    with TestClient(create_app(with_token(settings, TOKEN))) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_auth_missing_token_401(
    token_client: TestClient, method: str, path: str
) -> None:
    response = call(token_client, method, path, {"X-Request-ID": "no-token"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer", response.headers
    assert response.headers["x-request-id"] == "no-token", response.headers
    assert "Authorization: Bearer" in response.json()["detail"], response.text


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN.upper()}",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_auth_wrong_token_401(
    token_client: TestClient, method: str, path: str, authorization: str
) -> None:
    response = call(
        token_client, method, path, {"Authorization": authorization.encode()}
    )
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge == 'Bearer error="invalid_token"', challenge
    assert TOKEN not in response.text, response.text


@pytest.mark.parametrize(
    "authorization", [TOKEN, f"Basic {TOKEN}", f"Token {TOKEN}", "Bearer", "Bearer "]
)
def test_auth_other_schemes_401(token_client: TestClient, authorization: str) -> None:
    response = call(token_client, "POST", "/classify", {"Authorization": authorization})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer", response.headers


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_auth_valid_token_200(
    token_client: TestClient, method: str, path: str, scheme: str
) -> None:
    response = call(token_client, method, path, {"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", OPEN)
def test_auth_open_routes_need_no_token(token_client: TestClient, path: str) -> None:
    response = token_client.get(path)
    assert response.status_code == 200, response.text


def test_auth_checked_before_body(token_client: TestClient) -> None:
    response = token_client.post("/classify", content=b"not json")
    assert response.status_code == 401, response.text


def test_auth_checked_before_model_ready(settings: Settings) -> None:
    client = TestClient(create_app(with_token(settings, TOKEN)))
    anonymous = client.post("/classify", json=WAVEFORM)
    authorized = client.post(
        "/classify", json=WAVEFORM, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert anonymous.status_code == 401, anonymous.text
    assert authorized.status_code == 503, authorized.text


def test_auth_off_without_token(client: TestClient) -> None:
    for method, path in PROTECTED:
        response = call(client, method, path)
        assert response.status_code == 200, f"{method} {path}: {response.text}"
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {}), schema["components"]
    assert "security" not in schema["paths"]["/classify"]["post"]


def test_auth_openapi_declares_bearer_scheme(token_client: TestClient) -> None:
    schema = token_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert len(schemes) == 1, schemes
    ((name, scheme),) = schemes.items()
    assert scheme["type"] == "http", scheme
    assert scheme["scheme"] == "bearer", scheme

    paths = schema["paths"]
    for method, path in PROTECTED:
        operation = paths[path][method.lower()]
        assert operation.get("security") == [{name: []}], f"{method} {path}"
    for path in ("/health/live", "/health/ready", "/model"):
        assert "security" not in paths[path]["get"], path


def test_auth_token_never_logged(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("app")
    saved = list(logger.handlers), logger.level, logger.propagate
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(self.format(record))
            messages.append(repr(record.__dict__))

    logger.addHandler(Collect())
    try:
        debug = with_token(settings, TOKEN).model_copy(update={"log_level": "debug"})
        app = create_app(debug)
        with TestClient(app) as client:
            for authorization in (f"Bearer {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
                call(client, "POST", "/classify", {"Authorization": authorization})
                call(client, "GET", "/generate", {"Authorization": authorization})
        output = capsys.readouterr()
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]

    assert len(messages) >= 12, messages  # six requests, two entries each
    for message in messages:
        assert TOKEN not in message, message
    assert TOKEN not in output.err, output.err
    assert TOKEN not in output.out, output.out


@pytest.mark.parametrize(
    "token", ["", " ", f"{TOKEN}\n", f" {TOKEN}", "two words", 'quote"d', "caf\u00e9"]
)
def test_auth_invalid_configured_token_rejected(settings: Settings, token: str) -> None:
    with pytest.raises(ValueError, match="WAVECLS_API_TOKEN is not a valid") as error:
        create_app(with_token(settings, token))
    if token.strip():
        assert token.strip() not in str(error.value), str(error.value)


def test_auth_token_from_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVECLS_API_TOKEN", TOKEN)
    configured = Settings(model_path=settings.model_path, device="cpu")
    client = TestClient(create_app(configured))
    response = client.get("/generate")
    assert response.status_code == 401, response.text
