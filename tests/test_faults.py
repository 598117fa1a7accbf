"""Faults in the real process: a bad artifact or device at startup, SIGTERM under load.

Each test starts `python -m uvicorn app.main:app` as users do. A startup fault
must stop the process with a non-zero exit status before it listens, and its log
must name the cause and the path. SIGTERM must let every request in flight
finish with 200 before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from app.artifact import metadata_path_for
from app.config import DEFAULT_MODEL_PATH
from tests.conftest import Server, start_server, stop_server
from tests.test_soak import client_ports
from training.export import sha256_of

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 60
IN_FLIGHT_REQUESTS = 20
WAVEFORMS_PER_REQUEST = 1000
# Time for the server's event loop to read the headers of every accepted
# request. uvicorn closes, on shutdown, connections whose request has not begun.
SETTLE_S = 0.3
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class StartupFault:
    """A broken setup, and the phrases the log must contain."""

    name: str
    prepare: Callable[[Path], dict[str, str]]
    expected: Callable[[Path], list[str]]


def _copy_artifact(directory: Path) -> Path:
    shutil.copy(DEFAULT_MODEL_PATH, directory / DEFAULT_MODEL_PATH.name)
    metadata = metadata_path_for(DEFAULT_MODEL_PATH)
    shutil.copy(metadata, directory / metadata.name)
    return directory / DEFAULT_MODEL_PATH.name


def _missing_artifact(directory: Path) -> dict[str, str]:
    return {"WAVECLS_MODEL_PATH": str(directory / "nowhere" / "wavecls.pt")}


def _missing_metadata(directory: Path) -> dict[str, str]:
    model_path = _copy_artifact(directory)
    metadata_path_for(model_path).unlink()
    return {"WAVECLS_MODEL_PATH": str(model_path)}


def _truncated_artifact(directory: Path) -> dict[str, str]:
    # The metadata is rewritten to match the truncated file, as after an export
    # cut short, so that loading, not the hash check, is what fails.
    model_path = _copy_artifact(directory)
    content = model_path.read_bytes()
    model_path.write_bytes(content[: len(content) // 2])

    metadata_path = metadata_path_for(model_path)
    metadata = json.loads(metadata_path.read_text())
    metadata["sha256"] = sha256_of(model_path)
    metadata_path.write_text(json.dumps(metadata))
    return {"WAVECLS_MODEL_PATH": str(model_path)}


def _hash_mismatch(directory: Path) -> dict[str, str]:
    model_path = _copy_artifact(directory)
    content = bytearray(model_path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    model_path.write_bytes(bytes(content))
    return {"WAVECLS_MODEL_PATH": str(model_path)}


def _unavailable_device(directory: Path) -> dict[str, str]:
    # Only the rejection of an absent GPU is tested: loading onto CUDA cannot
    # run on a machine without one.
    return {"WAVECLS_DEVICE": "cuda:3"}


def _model_path(directory: Path) -> Path:
    return directory / DEFAULT_MODEL_PATH.name


STARTUP_FAULTS = [
    StartupFault(
        "missing-artifact",
        _missing_artifact,
        lambda d: [f"model artifact not found at {d / 'nowhere' / 'wavecls.pt'}"],
    ),
    StartupFault(
        "missing-metadata",
        _missing_metadata,
        lambda d: [f"model metadata not found at {metadata_path_for(_model_path(d))}"],
    ),
    StartupFault(
        "truncated-artifact",
        _truncated_artifact,
        lambda d: [f"model artifact at {_model_path(d)} could not be loaded by torch"],
    ),
    StartupFault(
        "hash-mismatch",
        _hash_mismatch,
        lambda d: [
            f"model artifact at {_model_path(d)} has SHA-256 ",
            "the file is corrupt or belongs to another export",
        ],
    ),
    StartupFault(
        "unavailable-device",
        _unavailable_device,
        lambda d: ["device 'cuda:3' is not available"],
    ),
]


@pytest.mark.parametrize("fault", STARTUP_FAULTS, ids=lambda fault: fault.name)
def test_startup_fault_stops_process(fault: StartupFault, tmp_path: Path) -> None:
    if fault.name == "unavailable-device" and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3, so the device is available")

    server = start_server(
        fault.prepare(tmp_path), f"fault-{fault.name}.log", wait=False
    )
    try:
        code = server.process.wait(STARTUP_TIMEOUT_S)
    finally:
        stop_server(server)
    log = server.log()

    assert code != 0, log
    assert "startup failed:" in log, log
    for phrase in fault.expected(tmp_path):
        assert phrase in log, log
    assert "Application startup failed" in log, log
    assert "Uvicorn running on" not in log, log


async def _classify_timed(
    url: str, body: str, started: float
) -> tuple[int | str, float, int]:
    """Post one batch; return the status (or transport error), finish time and size."""
    async with httpx.AsyncClient(base_url=url, timeout=STARTUP_TIMEOUT_S) as client:
        try:
            response = await client.post(
                "/classify", content=body, headers=JSON_HEADERS
            )
        except httpx.TransportError as exc:
            return repr(exc), time.monotonic() - started, 0
    predictions = response.json().get("predictions", []) if response.is_success else []
    return response.status_code, time.monotonic() - started, len(predictions)


async def _wait_for_connections(port: int, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(client_ports(port)) < count:
        assert time.monotonic() < deadline, f"{count} connections not seen"
        await asyncio.sleep(0.01)


async def _sigterm_during_batches(
    server: Server, body: str
) -> tuple[list[tuple[int | str, float, int]], float, str]:
    port = int(server.url.rsplit(":", 1)[1])
    started = time.monotonic()
    requests = [
        asyncio.create_task(_classify_timed(server.url, body, started))
        for _ in range(IN_FLIGHT_REQUESTS)
    ]
    await _wait_for_connections(port, IN_FLIGHT_REQUESTS, timeout_s=10)
    await asyncio.sleep(SETTLE_S)

    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic() - started
    await asyncio.sleep(SETTLE_S)
    # A request sent after SIGTERM must find the port closed.
    late = await _classify_timed(server.url, body, started)
    return [*await asyncio.gather(*requests)], signalled, str(late[0])


def test_sigterm_finishes_in_flight_requests() -> None:
    # Every batch must be queued at once, so the queue limit leaves room for all.
    queued = IN_FLIGHT_REQUESTS * WAVEFORMS_PER_REQUEST
    server = start_server(
        {"WAVECLS_MAX_QUEUED_WAVEFORMS": str(queued)}, "fault-sigterm-load.log"
    )
    try:
        generated = httpx.get(
            f"{server.url}/generate",
            params={"count": WAVEFORMS_PER_REQUEST, "seed": 41},
            timeout=STARTUP_TIMEOUT_S,
        )
        assert generated.status_code == 200, generated.text
        waveforms = [example["waveform"] for example in generated.json()["examples"]]
        body = json.dumps({"waveforms": waveforms})

        results, signalled, late = asyncio.run(_sigterm_during_batches(server, body))
        code = server.process.wait(STARTUP_TIMEOUT_S)
    finally:
        stop_server(server)
    log = server.log()

    statuses = [status for status, _, _ in results]
    assert statuses == [200] * IN_FLIGHT_REQUESTS, f"{statuses}\n{log}"
    sizes = [size for _, _, size in results]
    assert sizes == [WAVEFORMS_PER_REQUEST] * IN_FLIGHT_REQUESTS, sizes
    finished = sorted(round(finished_s, 2) for _, finished_s, _ in results)
    # Requests that finish after the signal were in flight when it came. How
    # many do depends on the machine's speed, so at least one is required.
    assert finished[-1] > signalled, f"SIGTERM at {signalled:.2f} s, done {finished}"
    assert "ConnectError" in late, late
    # uvicorn re-raises SIGTERM after its graceful shutdown (exit status -15).
    assert code in (0, -signal.SIGTERM), log
    assert "Finished server process" in log, log
    assert "shutdown complete" in log, log
