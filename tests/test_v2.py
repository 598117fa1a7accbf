"""The Open Inference Protocol (KServe V2) routes through TestClient."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from training.data import CLASS_NAMES, INPUT_LENGTH, generate

INFER = "/v2/models/wavecls/infer"
TOKEN = "v2-test-token"
CLASSIFICATION = re.compile(r"^(\d+\.\d{6}):(\d+):(\w+)$")


def _infer_body(
    waveforms: np.ndarray, datatype: str = "FP32", **extra: Any
) -> dict[str, Any]:
    tensor = {
        "name": "waveform",
        "shape": list(waveforms.shape),
        "datatype": datatype,
        "data": waveforms.ravel().tolist(),
    }
    return {"inputs": [tensor], **extra}


def _outputs(response_body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["name"]: output for output in response_body["outputs"]}


def _labels(indices: np.ndarray) -> list[str]:
    return [CLASS_NAMES[index] for index in indices.tolist()]


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, list[str]]:
    """Six generated waveforms and their labels."""
    generated = generate(6, seed=41)
    return generated.waveforms, _labels(generated.labels)


def test_v2_server_metadata_lists_classification(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "wavecls",
        "version": client.app.version,  # type: ignore[attr-defined]
        "extensions": ["classification"],
    }


def test_v2_health_returns_live_and_ready(client: TestClient) -> None:
    live = client.get("/v2/health/live")
    ready = client.get("/v2/health/ready")
    assert live.status_code == 200, live.text
    assert live.json() == {"live": True}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True}


def test_v2_model_metadata_describes_tensors(client: TestClient) -> None:
    version = client.get("/model").json()["version"]
    for path in ("/v2/models/wavecls", f"/v2/models/wavecls/versions/{version}"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == "wavecls"
        assert body["versions"] == [version]
        assert body["platform"] == "pytorch_torchscript"
        assert body["inputs"] == [
            {"name": "waveform", "datatype": "FP32", "shape": [-1, INPUT_LENGTH]}
        ]
        assert body["outputs"][0] == {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [-1, len(CLASS_NAMES)],
        }
        assert [output["name"] for output in body["outputs"]] == [
            "probabilities",
            "label",
            "ood_score",
            "out_of_distribution",
        ]
        assert body["parameters"]["class_names"] == ",".join(CLASS_NAMES)


def test_v2_model_ready_with_and_without_version(client: TestClient) -> None:
    version = client.get("/model").json()["version"]
    for path in (
        "/v2/models/wavecls/ready",
        f"/v2/models/wavecls/versions/{version}/ready",
    ):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"name": "wavecls", "ready": True}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/other/ready"),
        ("POST", "/v2/models/other/infer"),
        ("GET", "/v2/models/wavecls/versions/7"),
        ("GET", "/v2/models/wavecls/versions/7/ready"),
        ("POST", "/v2/models/wavecls/versions/7/infer"),
    ],
)
def test_v2_unknown_model_or_version_is_404(
    client: TestClient, method: str, path: str
) -> None:
    body = _infer_body(generate(1, seed=1).waveforms)
    response = client.request(method, path, json=body if method == "POST" else None)
    assert response.status_code == 404, response.text
    assert set(response.json()) == {"error"}, response.text
    assert "not found" in response.json()["error"]


def test_v2_infer_returns_generated_labels(
    client: TestClient, batch: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, labels = batch
    response = client.post(INFER, json=_infer_body(waveforms))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "wavecls"
    assert body["model_version"] == client.get("/model").json()["version"]
    assert "id" not in body

    outputs = _outputs(body)
    assert list(outputs) == [
        "probabilities",
        "label",
        "ood_score",
        "out_of_distribution",
    ]
    probabilities = outputs["probabilities"]
    assert probabilities["datatype"] == "FP32"
    assert probabilities["shape"] == [6, 3]
    rows = np.array(probabilities["data"]).reshape(6, 3)
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-5), rows
    assert _labels(rows.argmax(axis=1)) == labels
    assert outputs["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [6],
        "data": labels,
    }
    assert outputs["ood_score"]["datatype"] == "FP32"
    assert all(math.isfinite(score) for score in outputs["ood_score"]["data"])
    assert outputs["out_of_distribution"]["datatype"] == "BOOL"
    assert outputs["out_of_distribution"]["data"] == [False] * 6


def test_v2_infer_matches_classify(
    client: TestClient, batch: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, _ = batch
    v2 = client.post(INFER, json=_infer_body(waveforms)).json()
    classic = client.post("/classify", json={"waveforms": waveforms.tolist()}).json()
    rows = np.array(_outputs(v2)["probabilities"]["data"]).reshape(-1, 3)
    expected = np.array(
        [list(p["probabilities"].values()) for p in classic["predictions"]]
    )
    assert np.allclose(rows, expected, atol=1e-6), (rows, expected)


@pytest.mark.parametrize("layout", ["flat", "nested", "unbatched", "nested-unbatched"])
def test_v2_infer_accepts_data_layouts(client: TestClient, layout: str) -> None:
    generated = generate(1, seed=9, kinds=[1])
    row = generated.waveforms[0].tolist()
    shapes_and_data = {
        "flat": ([1, INPUT_LENGTH], row),
        "nested": ([1, INPUT_LENGTH], [row]),
        "unbatched": ([INPUT_LENGTH], row),
        "nested-unbatched": ([INPUT_LENGTH], [row]),
    }
    shape, data = shapes_and_data[layout]
    tensor = {"name": "waveform", "shape": shape, "datatype": "FP32", "data": data}
    response = client.post(INFER, json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    outputs = _outputs(response.json())
    assert outputs["label"]["data"] == ["square"]
    assert outputs["probabilities"]["shape"] == [1, 3]


def test_v2_infer_accepts_fp64(
    client: TestClient, batch: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, labels = batch
    body = _infer_body(waveforms.astype(np.float64), datatype="FP64")
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    assert _outputs(response.json())["label"]["data"] == labels


@pytest.mark.parametrize(("datatype", "dtype"), [("FP32", "<f4"), ("FP64", "<f8")])
def test_v2_infer_accepts_binary_input(
    client: TestClient,
    batch: tuple[np.ndarray, list[str]],
    datatype: str,
    dtype: str,
) -> None:
    waveforms, labels = batch
    raw = waveforms.astype(dtype).tobytes()
    tensor = {
        "name": "waveform",
        "shape": list(waveforms.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    response = client.post(
        INFER,
        content=header + raw,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    assert response.status_code == 200, response.text
    assert _outputs(response.json())["label"]["data"] == labels


def test_v2_infer_echoes_request_id(client: TestClient) -> None:
    body = _infer_body(generate(1, seed=2).waveforms, id="request-42")
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "request-42"


def test_v2_infer_returns_requested_outputs_only(
    client: TestClient, batch: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, _ = batch
    body = _infer_body(
        waveforms, outputs=[{"name": "out_of_distribution"}, {"name": "ood_score"}]
    )
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [output["name"] for output in outputs] == [
        "out_of_distribution",
        "ood_score",
    ]
    assert outputs[1]["shape"] == [6]


@pytest.mark.parametrize(("requested", "returned"), [(1, 1), (2, 2), (5, 3)])
def test_v2_infer_classification_returns_top_classes(
    client: TestClient,
    batch: tuple[np.ndarray, list[str]],
    requested: int,
    returned: int,
) -> None:
    waveforms, labels = batch
    body = _infer_body(
        waveforms,
        outputs=[
            {"name": "probabilities", "parameters": {"classification": requested}}
        ],
    )
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [6, returned]

    rows = np.array(output["data"]).reshape(6, returned)
    for row, label in zip(rows.tolist(), labels, strict=True):
        matches = [CLASSIFICATION.match(entry) for entry in row]
        assert all(matches), row
        values = [float(match.group(1)) for match in matches if match]
        names = [match.group(3) for match in matches if match]
        indices = [int(match.group(2)) for match in matches if match]
        assert names[0] == label, row
        assert values == sorted(values, reverse=True), row
        assert [CLASS_NAMES[index] for index in indices] == names, row


def _tensor(**changes: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": "waveform",
        "shape": [1, INPUT_LENGTH],
        "datatype": "FP32",
        "data": [0.5] * INPUT_LENGTH,
    }
    tensor.update(changes)
    return {"inputs": [tensor]}


def _samples_with(value: Any) -> list[Any]:
    return [0.5] * (INPUT_LENGTH - 1) + [value]


INVALID_REQUESTS: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("not-json", b"{", "not valid JSON"),
    ("empty-body", b"", "not valid JSON"),
    ("json-list", b"[]", "expected a JSON object"),
    ("no-inputs", {}, "missing 'inputs'"),
    ("inputs-not-list", {"inputs": {"name": "waveform"}}, "'inputs' must be a list"),
    ("empty-inputs", {"inputs": []}, "'inputs' must be a list"),
    ("unknown-input", _tensor(name="signal"), "unknown input 'signal'"),
    (
        "input-twice",
        {"inputs": _tensor()["inputs"] * 2},
        "appears 2 times",
    ),
    ("id-not-string", {**_tensor(), "id": 42}, "'id' must be a string"),
    ("shape-missing", _tensor(shape=None), "'shape' must be a list"),
    ("shape-strings", _tensor(shape=["1", "100"]), "'shape' must be a list"),
    ("shape-wrong-length", _tensor(shape=[1, 99]), "expected [N, 100] or [100]"),
    ("shape-3d", _tensor(shape=[1, 1, 100]), "expected [N, 100] or [100]"),
    ("shape-zero-batch", _tensor(shape=[0, 100], data=[]), "send 1 to"),
    ("datatype-int", _tensor(datatype="INT32"), "send FP32 or FP64"),
    ("datatype-missing", _tensor(datatype=None), "send FP32 or FP64"),
    ("data-missing", _tensor(data=None), "'data' must be a list"),
    ("data-short", _tensor(data=[0.5] * 99), "contains 99 values"),
    ("data-long", _tensor(data=[0.5] * 101), "contains 101 values"),
    (
        "data-shape-mismatch",
        _tensor(shape=[2, 100], data=[0.5] * 100),
        "contains 100 values, but shape [2, 100] needs 200",
    ),
    ("data-ragged", _tensor(data=[[0.5] * 60, [0.5] * 40]), "row 0 of 'data'"),
    ("data-string", _tensor(data=_samples_with("1.0")), "sample 99: expected a number"),
    ("data-bool", _tensor(data=_samples_with(True)), "got the boolean true"),
    ("data-null", _tensor(data=_samples_with(None)), "got null"),
    ("data-above-float32", _tensor(data=_samples_with(1e39)), "float32 range"),
    ("data-huge-int", _tensor(data=_samples_with(10**400)), "float32 range"),
    (
        "outputs-unknown",
        {**_tensor(), "outputs": [{"name": "logits"}]},
        "unknown output 'logits'",
    ),
    (
        "outputs-twice",
        {**_tensor(), "outputs": [{"name": "label"}, {"name": "label"}]},
        "requested more than once",
    ),
    (
        "classification-not-int",
        {
            **_tensor(),
            "outputs": [
                {"name": "probabilities", "parameters": {"classification": "2"}}
            ],
        },
        "'classification' must be a positive integer",
    ),
    (
        "classification-on-label",
        {
            **_tensor(),
            "outputs": [{"name": "label", "parameters": {"classification": 1}}],
        },
        "cannot be returned as a classification",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [pytest.param(body, message, id=name) for name, body, message in INVALID_REQUESTS],
)
def test_v2_infer_rejects_invalid_request(
    client: TestClient, body: bytes | dict[str, Any], message: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(
        INFER, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"], response.text
    assert message in response.json()["error"], response.text


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_v2_infer_rejects_non_finite_literal(
    client: TestClient, literal: bytes
) -> None:
    samples = b", ".join([b"0.5"] * (INPUT_LENGTH - 1) + [literal])
    content = (
        b'{"inputs": [{"name": "waveform", "shape": [100], "datatype": "FP32", '
        b'"data": [' + samples + b"]}]}"
    )
    response = client.post(INFER, content=content)
    assert response.status_code == 400, response.text
    assert "waveform 0, sample 99: expected a finite number" in response.json()["error"]


def test_v2_infer_rejects_bad_binary_input(client: TestClient) -> None:
    tensor = {
        "name": "waveform",
        "shape": [1, INPUT_LENGTH],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 400},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    cases = {
        "short": (header + b"\0" * 396, str(len(header)), "the body has 396 bytes"),
        "header-too-long": (header, str(len(header) + 1), "Inference-Header"),
        "header-not-int": (header, "ten", "Inference-Header"),
        "non-finite": (
            header + np.full(100, np.inf, "<f4").tobytes(),
            str(len(header)),
            "expected a finite number",
        ),
    }
    for name, (content, length, message) in cases.items():
        response = client.post(
            INFER,
            content=content,
            headers={"Inference-Header-Content-Length": length},
        )
        assert response.status_code == 400, (name, response.text)
        assert message in response.json()["error"], (name, response.text)


def test_v2_infer_rejects_compressed_body(client: TestClient) -> None:
    response = client.post(
        INFER, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400, response.text
    assert "send the body uncompressed" in response.json()["error"]


def test_v2_infer_rejects_oversized_batch(client: TestClient) -> None:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    count = settings.max_batch_size + 1
    body = _tensor(shape=[count, INPUT_LENGTH], data=[0.0] * count * INPUT_LENGTH)
    response = client.post(INFER, json=body)
    assert response.status_code == 400, response.text
    assert f"send 1 to {settings.max_batch_size} waveforms" in response.json()["error"]


def test_v2_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    v2_paths = {path: item for path, item in paths.items() if path.startswith("/v2")}
    assert len(v2_paths) == 9, sorted(v2_paths)
    for path, item in v2_paths.items():
        for method, operation in item.items():
            assert operation.get("description"), (method, path)
            assert "422" not in operation["responses"], (method, path)
    infer = v2_paths["/v2/models/{model_name}/infer"]["post"]
    example = infer["requestBody"]["content"]["application/json"]["example"]
    assert example["inputs"][0]["name"] == "waveform"


@pytest.fixture(scope="module")
def loading_client(settings: Settings) -> Iterator[TestClient]:
    """A client whose lifespan never ran, so the model is not loaded."""
    yield TestClient(create_app(settings))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/wavecls"),
        ("GET", "/v2/models/wavecls/ready"),
        ("POST", INFER),
    ],
)
def test_v2_not_ready_is_503(
    loading_client: TestClient, method: str, path: str
) -> None:
    response = loading_client.request(method, path, content=b"{}")
    assert response.status_code == 503, response.text
    assert "not ready" in response.json()["error"]
    assert response.headers["Retry-After"] == "1"


def test_v2_live_while_loading(loading_client: TestClient) -> None:
    response = loading_client.get("/v2/health/live")
    assert response.status_code == 200, response.text
    assert response.json() == {"live": True}


@pytest.fixture(scope="module")
def guarded_client(settings: Settings) -> Iterator[TestClient]:
    """A client that needs an API token and queues at most one waveform."""
    guarded = settings.model_copy(
        update={"api_token": SecretStr(TOKEN), "max_queued_waveforms": 1}
    )
    with TestClient(create_app(guarded)) as test_client:
        yield test_client


def test_v2_infer_requires_token_when_set(guarded_client: TestClient) -> None:
    body = _infer_body(generate(1, seed=3).waveforms)
    missing = guarded_client.post(INFER, json=body)
    wrong = guarded_client.post(
        INFER, json=body, headers={"Authorization": "Bearer nope"}
    )
    right = guarded_client.post(
        INFER, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert missing.status_code == 401, missing.text
    assert "missing bearer token" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.status_code == 401, wrong.text
    assert "invalid bearer token" in wrong.json()["error"]
    assert right.status_code == 200, right.text


def test_v2_health_and_metadata_need_no_token(guarded_client: TestClient) -> None:
    for path in ("/v2", "/v2/health/ready", "/v2/models/wavecls"):
        response = guarded_client.get(path)
        assert response.status_code == 200, (path, response.text)


def test_v2_infer_overloaded_is_503(guarded_client: TestClient) -> None:
    body = _infer_body(generate(2, seed=4).waveforms)
    response = guarded_client.post(
        INFER, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 503, response.text
    assert "retry later" in response.json()["error"]
    assert response.headers["Retry-After"] == "1"


def test_v2_infer_rejects_lone_surrogate_id(client: TestClient) -> None:
    body = json.dumps(_infer_body(generate(1, seed=2).waveforms, id="x"))
    body = body.replace('"id": "x"', '"id": "\\ud800"')
    response = client.post(
        INFER, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "'id' must be valid Unicode text" in response.json()["error"]
