"""Shared fixtures: the application under TestClient and a real uvicorn process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import DEFAULT_MODEL_PATH, Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = ROOT / "test-output"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings for tests: the committed artifact on the CPU."""
    return Settings(model_path=DEFAULT_MODEL_PATH, device="cpu", torch_threads=1)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient whose lifespan has loaded the committed artifact."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A uvicorn process started for a test."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        """Return what the process has written so far."""
        return self.log_path.read_text()


def start_server(
    env: dict[str, str] | None = None, log_name: str = "server.log", wait: bool = True
) -> Server:
    """Start `uvicorn app.main:app` on a free port and wait until it is ready."""
    port = free_port()
    OUTPUT_DIR.mkdir(exist_ok=True)
    log_path = OUTPUT_DIR / log_name
    full_env = {**os.environ, "WAVECLS_DEVICE": "cpu", **(env or {})}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    if wait:
        wait_until_ready(server)
    return server


def wait_until_ready(server: Server, timeout_s: float = 60.0) -> None:
    """Poll /health/ready until it returns 200; fail with the server log otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"server exited with {server.process.returncode}:\n{server.log()}"
            )
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(server)
    pytest.fail(f"server not ready within {timeout_s} s:\n{server.log()}")


def stop_server(server: Server, timeout_s: float = 15.0) -> int:
    """Send SIGTERM to the server and return its exit code."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The service as a real uvicorn process on 127.0.0.1."""
    running = start_server()
    yield running
    stop_server(running)
