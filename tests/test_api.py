"""Every route through TestClient, with the committed artifact loaded."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from training.data import CLASS_NAMES, INPUT_LENGTH


def _generated(
    client: TestClient, kind: str = "random", count: int = 1, seed: int = 1
) -> list[dict[str, Any]]:
    response = client.get(
        "/generate", params={"type": kind, "count": count, "seed": seed}
    )
    assert response.status_code == 200, response.text
    examples: list[dict[str, Any]] = response.json()["examples"]
    return examples


def _assert_prediction(prediction: dict[str, Any]) -> None:
    probabilities = prediction["probabilities"]
    assert list(probabilities) == list(CLASS_NAMES)
    assert all(isinstance(p, float) and 0 <= p <= 1 for p in probabilities.values())
    assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-9)
    assert prediction["label"] == max(probabilities, key=probabilities.__getitem__)
    assert math.isfinite(prediction["ood_score"])
    assert isinstance(prediction["out_of_distribution"], bool)


@pytest.mark.parametrize("kind", CLASS_NAMES)
def test_classify_single_returns_own_label(client: TestClient, kind: str) -> None:
    example = _generated(client, kind, seed=11)[0]
    response = client.post("/classify", json={"waveform": example["waveform"]})
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_prediction(body)
    assert body["label"] == kind
    assert body["out_of_distribution"] is False
    assert body["model_version"] == client.get("/model").json()["version"]


def test_classify_batch_keeps_order(client: TestClient) -> None:
    examples = _generated(client, count=30, seed=5)
    response = client.post(
        "/classify", json={"waveforms": [e["waveform"] for e in examples]}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 30
    for prediction, example in zip(predictions, examples, strict=True):
        _assert_prediction(prediction)
        assert prediction["label"] == example["label"]


def test_classify_accepts_integers(client: TestClient) -> None:
    waveform = [1 if (i // 10) % 2 == 0 else -1 for i in range(INPUT_LENGTH)]
    response = client.post("/classify", json={"waveform": waveform})
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "square"


@pytest.mark.parametrize("level", [0.0, 3.25, -1e6])
def test_classify_constant_waveform(client: TestClient, level: float) -> None:
    response = client.post("/classify", json={"waveform": [level] * INPUT_LENGTH})
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_prediction(body)
    assert body["out_of_distribution"] is True


def _bad_single(sample: Any) -> dict[str, Any]:
    waveform: list[Any] = [0.5] * INPUT_LENGTH
    waveform[17] = sample
    return {"waveforms": [[0.1] * INPUT_LENGTH, waveform]}


BAD_SAMPLES = [
    ("string", "abc", "got a string"),
    ("boolean", True, "got a boolean"),
    ("null", None, "got null"),
    ("nested list", [1.0], "got a list"),
    ("beyond float32", 1e39, "float32 range"),
    ("huge integer", 10**40, "float32 range"),
]


@pytest.mark.parametrize(
    ("name", "sample", "problem"), BAD_SAMPLES, ids=[b[0] for b in BAD_SAMPLES]
)
def test_classify_bad_sample_names_position(
    client: TestClient, name: str, sample: Any, problem: str
) -> None:
    response = client.post("/classify", json=_bad_single(sample))
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "waveforms", 1, 17]
    assert "waveform 1, sample 17" in error["msg"]
    assert problem in error["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_classify_non_finite_names_position(client: TestClient, literal: str) -> None:
    samples = ["0.5"] * INPUT_LENGTH
    samples[42] = literal
    body = '{"waveform": [' + ", ".join(samples) + "]}"
    response = client.post(
        "/classify", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "waveform", 42]
    assert "waveform 0, sample 42: expected a finite number" in error["msg"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"waveform": [0.0] * 99}, "expected exactly 100 samples, got 99"),
        ({"waveform": [0.0] * 101}, "expected exactly 100 samples, got 101"),
        ({"waveform": []}, "expected exactly 100 samples, got 0"),
        ({"waveform": "0,1,2"}, "expected a list of 100 numbers, got a string"),
        ({"waveform": None}, "got null"),
        ({"waveforms": []}, "expected 1 to 1024 waveforms, got 0"),
        (
            {"waveforms": [[0.0] * 100, [0.0] * 3]},
            "waveform 1: expected exactly 100 samples, got 3",
        ),
        ({"waveforms": [[0.0] * 100] * 1025}, "expected 1 to 1024 waveforms, got 1025"),
        ({"waveforms": {"a": 1}}, "expected a list of waveforms"),
        ({}, "send exactly one of"),
        ({"waveform": [0.0] * 100, "waveforms": [[0.0] * 100]}, "send exactly one of"),
        ({"signal": [0.0] * 100}, "unknown field 'signal'"),
        ([0.0] * 100, "expected a JSON object"),
    ],
)
def test_classify_bad_body_is_named(
    client: TestClient, body: Any, message: str
) -> None:
    response = client.post("/classify", json=body)
    assert response.status_code == 422, response.text
    messages = " | ".join(error["msg"] for error in response.json()["detail"])
    assert message in messages


def test_classify_invalid_json(client: TestClient) -> None:
    response = client.post(
        "/classify",
        content=b'{"waveform": [1, 2',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_generate_is_reproducible(client: TestClient) -> None:
    first = client.get("/generate", params={"count": 4, "seed": 0}).json()
    second = client.get("/generate", params={"count": 4, "seed": 0}).json()
    assert first == second
    assert first["seed"] == 0
    assert len(first["examples"]) == 4
    assert all(len(e["waveform"]) == INPUT_LENGTH for e in first["examples"])


def test_generate_without_seed_returns_one(client: TestClient) -> None:
    body = client.get("/generate").json()
    again = client.get("/generate", params={"seed": body["seed"]}).json()
    assert again["examples"] == body["examples"]


def test_generate_type_and_options(client: TestClient) -> None:
    params = {
        "type": "sawtooth",
        "count": 3,
        "seed": 9,
        "cycles": 12,
        "snr_db": 20,
        "amplitude": 3,
        "offset": -2,
    }
    body = client.get("/generate", params=params).json()
    assert {e["label"] for e in body["examples"]} == {"sawtooth"}
    waveforms = [e["waveform"] for e in body["examples"]]
    predictions = client.post("/classify", json={"waveforms": waveforms}).json()[
        "predictions"
    ]
    assert [p["label"] for p in predictions] == ["sawtooth"] * 3


@pytest.mark.parametrize(
    "params",
    [
        {"count": 0},
        {"count": 1001},
        {"type": "triangle"},
        {"seed": -1},
        {"cycles": 0},
        {"snr_db": "loud"},
    ],
)
def test_generate_rejects_bad_query(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/generate", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_health_routes(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}


def test_model_route_reports_artifact(client: TestClient) -> None:
    body = client.get("/model").json()
    assert body["device"] == "cpu"
    assert len(body["sha256"]) == 64
    assert body["class_names"] == list(CLASS_NAMES)
    assert body["input_length"] == INPUT_LENGTH
    assert body["metadata"]["sha256"] == body["sha256"]
    assert body["metadata"]["output"] == "probabilities"


def test_openapi_describes_routes_with_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/classify", "/generate", "/health/live", "/health/ready", "/model"):
        assert path in schema["paths"], path
    request = schema["paths"]["/classify"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    assert len(request["schema"]["oneOf"]) == 2
    components = schema["components"]["schemas"]
    assert components["ClassifyOne"]["examples"]
    assert components["ClassifyBatch"]["properties"]["waveforms"]["maxItems"] == 1024
    assert client.get("/docs").status_code == 200


def test_ready_is_503_before_model_loads(settings: Any) -> None:
    from app.main import create_app

    app = create_app(settings)
    with TestClient(app) as started:
        app.state.engine, engine = None, app.state.engine
        response = started.get("/health/ready")
        app.state.engine = engine
    assert response.status_code == 503, response.text
    assert "not ready" in response.json()["detail"]
