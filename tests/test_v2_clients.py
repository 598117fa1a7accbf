"""Third-party V2 clients from PyPI against the service as a real process.

tritonclient's HTTP client and KServe's REST client are used as their own
documentation shows, with their default binary tensor encoding and with JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from tritonclient.utils import InferenceServerException

from tests.conftest import Server
from training.data import CLASS_NAMES, INPUT_LENGTH

pytestmark = pytest.mark.slow

MODEL = "wavecls"


@pytest.fixture(scope="module")
def generated(server: Server) -> tuple[np.ndarray, list[str]]:
    """Nine waveforms from the service's /generate, three of each class."""
    waveforms: list[list[float]] = []
    labels: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for kind in CLASS_NAMES:
            response = http.get(
                "/generate", params={"type": kind, "count": 3, "seed": 12}
            )
            assert response.status_code == 200, response.text
            for example in response.json()["examples"]:
                waveforms.append(example["waveform"])
                labels.append(example["label"])
    return np.array(waveforms, dtype=np.float32), labels


@pytest.fixture
def triton_client(server: Server) -> Any:
    """tritonclient's HTTP client for the server."""
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def _version(server: Server) -> str:
    return str(httpx.get(f"{server.url}/model", timeout=10).json()["version"])


def test_tritonclient_reads_health_and_metadata(
    triton_client: Any, server: Server
) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert triton_client.is_model_ready(MODEL, model_version=_version(server))
    assert not triton_client.is_model_ready("other")

    server_metadata = triton_client.get_server_metadata()
    assert server_metadata["name"] == MODEL
    assert "classification" in server_metadata["extensions"]

    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["versions"] == [_version(server)]
    assert metadata["inputs"][0]["shape"] == [-1, INPUT_LENGTH]
    assert metadata["parameters"]["class_names"].split(",") == list(CLASS_NAMES)


@pytest.mark.parametrize("binary_data", [True, False])
def test_tritonclient_infers_generated_labels(
    triton_client: Any, generated: tuple[np.ndarray, list[str]], binary_data: bool
) -> None:
    waveforms, labels = generated
    tensor = triton.InferInput("waveform", list(waveforms.shape), "FP32")
    tensor.set_data_from_numpy(waveforms, binary_data=binary_data)
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary_data),
        triton.InferRequestedOutput("label", binary_data=binary_data),
        triton.InferRequestedOutput("out_of_distribution", binary_data=binary_data),
    ]

    result = triton_client.infer(MODEL, [tensor], outputs=outputs, request_id="t-1")

    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(labels), len(CLASS_NAMES))
    assert [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)] == labels
    assert result.as_numpy("label").tolist() == labels
    assert not result.as_numpy("out_of_distribution").any()
    assert result.get_response()["id"] == "t-1"


def test_tritonclient_class_count_returns_top_labels(
    triton_client: Any, generated: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, labels = generated
    tensor = triton.InferInput("waveform", list(waveforms.shape), "FP32")
    tensor.set_data_from_numpy(waveforms)
    requested = triton.InferRequestedOutput("probabilities", class_count=2)

    result = triton_client.infer(MODEL, [tensor], outputs=[requested])

    classes = result.as_numpy("probabilities")
    assert classes.shape == (len(labels), 2)
    top = [str(entry).split(":") for entry in classes[:, 0]]
    assert [parts[2] for parts in top] == labels
    assert all(float(parts[0]) > 0.5 for parts in top), top


def test_tritonclient_unknown_model_raises_404(
    triton_client: Any, generated: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, _ = generated
    tensor = triton.InferInput("waveform", list(waveforms.shape), "FP32")
    tensor.set_data_from_numpy(waveforms)
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer("other", [tensor])
    assert raised.value.status() == "404"
    assert "model 'other' not found" in raised.value.message()


def test_tritonclient_invalid_shape_raises_400(triton_client: Any) -> None:
    tensor = triton.InferInput("waveform", [1, 99], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 99), dtype=np.float32))
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(MODEL, [tensor])
    assert raised.value.status() == "400"
    assert "expected [N, 100] or [100]" in raised.value.message()


def _kserve_client() -> InferenceRESTClient:
    return InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=10))


def test_kserve_client_reads_health(server: Server) -> None:
    async def check() -> tuple[bool, bool, bool, bool]:
        async with _kserve_client() as client:
            return (
                await client.is_server_live(server.url),
                await client.is_server_ready(server.url),
                await client.is_model_ready(server.url, MODEL),
                await client.is_model_ready(server.url, "other"),
            )

    live, ready, model_ready, other_ready = asyncio.run(check())
    assert live is True
    assert ready is True
    assert model_ready is True
    assert other_ready is False


@pytest.mark.parametrize("binary_data", [True, False])
def test_kserve_client_infers_generated_labels(
    server: Server, generated: tuple[np.ndarray, list[str]], binary_data: bool
) -> None:
    waveforms, labels = generated
    tensor = InferInput("waveform", list(waveforms.shape), "FP32")
    tensor.set_data_from_numpy(waveforms, binary_data=binary_data)
    request = InferRequest(model_name=MODEL, infer_inputs=[tensor], request_id="k-1")

    async def infer() -> Any:
        async with _kserve_client() as client:
            return await client.infer(server.url, request, model_name=MODEL)

    response = asyncio.run(infer())

    outputs = {output.name: output.as_numpy() for output in response.outputs}
    assert response.id == "k-1"
    # kserve 0.21's InferResponse.from_bytes does not keep model_version.
    assert response.model_name == MODEL
    assert outputs["label"].tolist() == labels
    assert [CLASS_NAMES[i] for i in outputs["probabilities"].argmax(axis=1)] == labels
    assert outputs["ood_score"].shape == (len(labels),)
    assert not outputs["out_of_distribution"].any()


def test_kserve_client_classification_output(
    server: Server, generated: tuple[np.ndarray, list[str]]
) -> None:
    waveforms, labels = generated
    tensor = InferInput("waveform", list(waveforms.shape), "FP32")
    tensor.set_data_from_numpy(waveforms)
    request = InferRequest(
        model_name=MODEL,
        infer_inputs=[tensor],
        request_outputs=[RequestedOutput("probabilities", {"classification": 1})],
    )

    async def infer() -> Any:
        async with _kserve_client() as client:
            return await client.infer(server.url, request, model_name=MODEL)

    (output,) = asyncio.run(infer()).outputs

    assert output.datatype == "BYTES"
    classes = output.as_numpy()
    assert classes.shape == (len(labels), 1)
    assert [str(entry).rsplit(":", 1)[1] for entry in classes[:, 0]] == labels
