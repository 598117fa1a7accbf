"""The service as users start it: uvicorn as a real process on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.conftest import Server
from training.data import CLASS_NAMES

pytestmark = pytest.mark.slow


def test_server_classifies_generated_waveforms(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        generated = http.get("/generate", params={"count": 24, "seed": 77}).json()
        waveforms = [example["waveform"] for example in generated["examples"]]
        labels = [example["label"] for example in generated["examples"]]

        batch = http.post("/classify", json={"waveforms": waveforms})
        assert batch.status_code == 200, batch.text
        assert [p["label"] for p in batch.json()["predictions"]] == labels

        for waveform, label in zip(waveforms[:6], labels[:6], strict=True):
            single = http.post("/classify", json={"waveform": waveform})
            assert single.status_code == 200, single.text
            assert single.json()["label"] == label


def test_server_concurrent_requests_keep_their_answers(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        examples = http.get("/generate", params={"count": 60, "seed": 3}).json()[
            "examples"
        ]

    def classify(example: dict[str, object]) -> str:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            response = http.post("/classify", json={"waveform": example["waveform"]})
            assert response.status_code == 200, response.text
            return str(response.json()["label"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        labels = list(pool.map(classify, examples))
    assert labels == [example["label"] for example in examples]


def test_health_answers_during_large_batch(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        big = http.get("/generate", params={"count": 1000, "seed": 8}).json()[
            "examples"
        ]
        body = {"waveforms": [example["waveform"] for example in big]}

        def post_batch() -> int:
            with httpx.Client(base_url=server.url, timeout=60) as batch_client:
                return batch_client.post("/classify", json=body).status_code

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            batches = [pool.submit(post_batch) for _ in range(4)]
            time.sleep(0.05)
            started = time.perf_counter()
            live = http.get("/health/live")
            elapsed = time.perf_counter() - started
            statuses = [future.result() for future in batches]
    assert live.status_code == 200
    assert statuses == [200] * 4
    # Generous bound: the point is that the event loop is not blocked for the
    # length of four 1,000-waveform forward passes.
    assert elapsed < 0.5, f"/health/live took {elapsed:.3f} s during inference"


def test_class_names_in_openapi(server: Server) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    prediction = schema["components"]["schemas"]["Prediction"]
    assert prediction["properties"]["label"]["enum"] == list(CLASS_NAMES)
