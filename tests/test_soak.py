"""Soak: a real uvicorn process held at 64 concurrent connections for 60 s.

The load is a fixed mix of single waveforms, 64-waveform batches and invalid
bodies, sent by 64 asyncio workers in this process to the server in its own
process. Each worker has a client of its own with one keep-alive connection:
with one shared 64-connection httpx pool, most connections sat idle until
uvicorn's 5 s keep-alive timeout closed them, and about a dozen carried the
load. The test prints its figures and writes them to test-output/soak.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import OUTPUT_DIR, Server, start_server, stop_server

pytestmark = pytest.mark.slow

CONNECTIONS = 64
# Resident memory climbs by about 35 MiB in the first 20 s of load (allocator
# pools, caches), then by 0-2 MiB per 10 s. It is measured after that ramp.
WARMUP_S = 20.0
SOAK_S = 60.0
BATCH_SIZE = 64
MAX_RSS_GROWTH = 0.10
CONNECTION_SAMPLE_INTERVAL_S = 5.0
REQUEST_TIMEOUT_S = 30.0
JSON_HEADERS = {"content-type": "application/json"}
TCP_ESTABLISHED = "01"  # the `st` column of /proc/net/tcp

# Bodies the service must reject with 422, one per kind of mistake.
INVALID_BODIES = [
    json.dumps({"waveform": [0.0] * 99}),
    json.dumps({"waveform": [0.0] * 100, "extra": 1}),
    json.dumps({"waveforms": []}),
    json.dumps({"waveform": ["a"] * 100}),
    json.dumps({"waveform": [1e39] * 100}),
    "{not json",
]
# Out of every 10 requests: 7 single waveforms, 1 batch and 2 invalid bodies.
MIX = ["single"] * 7 + ["batch"] + ["invalid"] * 2


@dataclass
class Tally:
    """Statuses, latencies and transport errors of the requests of one phase."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    def count(self, kind: str, status: int) -> int:
        return self.statuses[(kind, status)]

    def other_statuses(self, kind: str, expected: int) -> dict[str, int]:
        return {
            f"{name} {status}": number
            for (name, status), number in self.statuses.items()
            if name == kind and status != expected
        }


@pytest.fixture(scope="module")
def soak_server() -> Iterator[Server]:
    """A server of its own, so that no other test's requests change its memory."""
    running = start_server(log_name="soak.log")
    yield running
    stop_server(running)


def _request_bodies(server: Server) -> list[tuple[str, str]]:
    response = httpx.get(
        f"{server.url}/generate",
        params={"count": BATCH_SIZE, "seed": 2024},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    waveforms = [example["waveform"] for example in response.json()["examples"]]

    singles = [json.dumps({"waveform": waveform}) for waveform in waveforms]
    batch = json.dumps({"waveforms": waveforms})
    bodies: list[tuple[str, str]] = []
    for index, kind in enumerate(MIX * len(INVALID_BODIES)):
        if kind == "single":
            bodies.append((kind, singles[index % len(singles)]))
        elif kind == "batch":
            bodies.append((kind, batch))
        else:
            bodies.append((kind, INVALID_BODIES[index % len(INVALID_BODIES)]))
    return bodies


async def _send_until(
    client: httpx.AsyncClient,
    bodies: list[tuple[str, str]],
    start: int,
    deadline: float,
    tally: Tally,
) -> None:
    index = start
    while time.monotonic() < deadline:
        kind, body = bodies[index % len(bodies)]
        index += 1
        started = time.perf_counter()
        try:
            response = await client.post(
                "/classify", content=body, headers=JSON_HEADERS
            )
        except httpx.TransportError as exc:
            tally.errors.append(f"{kind}: {exc!r}")
            continue
        tally.latencies_s.append(time.perf_counter() - started)
        tally.statuses[(kind, response.status_code)] += 1


def _resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the value is in kB
    raise AssertionError(f"no VmRSS line in /proc/{pid}/status")


def client_ports(port: int) -> frozenset[int]:
    # Rows look like `0: 0100007F:1F90 0100007F:D2F0 01 ...`: local and remote
    # address as hex IP:port, then the state.
    ports = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = row.split()[1:4]
        if state == TCP_ESTABLISHED and int(local.split(":")[1], 16) == port:
            ports.add(int(remote.split(":")[1], 16))
    return frozenset(ports)


async def _sample_connections(port: int, deadline: float) -> list[frozenset[int]]:
    # Each sample is the set of client ports connected to the server: a changed
    # set means a connection was closed and another one opened.
    samples: list[frozenset[int]] = []
    while time.monotonic() + CONNECTION_SAMPLE_INTERVAL_S < deadline:
        await asyncio.sleep(CONNECTION_SAMPLE_INTERVAL_S)
        samples.append(client_ports(port))
    return samples


async def _run_phase(
    clients: list[httpx.AsyncClient],
    bodies: list[tuple[str, str]],
    duration_s: float,
    port: int,
) -> tuple[Tally, list[frozenset[int]]]:
    tally = Tally()
    started = time.monotonic()
    deadline = started + duration_s
    step = len(bodies) // CONNECTIONS or 1
    senders = [
        _send_until(client, bodies, worker * step, deadline, tally)
        for worker, client in enumerate(clients)
    ]
    sampler = asyncio.create_task(_sample_connections(port, deadline))
    await asyncio.gather(*senders)
    tally.duration_s = time.monotonic() - started
    return tally, await sampler


async def _warm_up_and_soak(
    server: Server, bodies: list[tuple[str, str]]
) -> tuple[Tally, list[frozenset[int]], dict[str, int]]:
    pid = server.process.pid
    port = int(server.url.rsplit(":", 1)[1])
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url, limits=limits, timeout=REQUEST_TIMEOUT_S
                )
            )
            for _ in range(CONNECTIONS)
        ]
        rss = {"idle": _resident_bytes(pid)}
        await _run_phase(clients, bodies, WARMUP_S, port)
        rss["warm"] = _resident_bytes(pid)
        tally, samples = await _run_phase(clients, bodies, SOAK_S, port)
        rss["soaked"] = _resident_bytes(pid)
    return tally, samples, rss


def _percentile_ms(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100)[percent - 1] * 1000


def _figures(tally: Tally, rss: dict[str, int]) -> dict[str, object]:
    return {
        "connections": CONNECTIONS,
        "duration_s": round(tally.duration_s, 1),
        "requests": tally.requests,
        "requests_per_s": round(tally.requests / tally.duration_s, 1),
        "single_200": tally.count("single", 200),
        "batch_200": tally.count("batch", 200),
        "invalid_422": tally.count("invalid", 422),
        "transport_errors": len(tally.errors),
        "p50_ms": round(_percentile_ms(tally.latencies_s, 50), 1),
        "p99_ms": round(_percentile_ms(tally.latencies_s, 99), 1),
        "rss_idle_mib": round(rss["idle"] / 2**20, 1),
        "rss_after_warmup_mib": round(rss["warm"] / 2**20, 1),
        "rss_after_soak_mib": round(rss["soaked"] / 2**20, 1),
        "rss_growth_percent": round(100 * (rss["soaked"] / rss["warm"] - 1), 2),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def test_soak_64_connections_for_60_s(
    soak_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = _request_bodies(soak_server)
    tally, samples, rss = asyncio.run(_warm_up_and_soak(soak_server, bodies))

    figures = _figures(tally, rss)
    OUTPUT_DIR.mkdir(exist_ok=True)
    (OUTPUT_DIR / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        print("\nsoak:", json.dumps(figures))

    assert tally.duration_s >= SOAK_S, figures
    assert tally.errors == [], tally.errors[:10]
    assert tally.other_statuses("single", 200) == {}, figures
    assert tally.other_statuses("batch", 200) == {}, figures
    assert tally.other_statuses("invalid", 422) == {}, figures
    assert tally.count("single", 200) > 0, figures
    assert tally.count("batch", 200) > 0, figures
    assert tally.count("invalid", 422) > 0, figures
    assert samples, "no connection samples were taken"
    assert all(len(sample) == CONNECTIONS for sample in samples), [
        len(sample) for sample in samples
    ]
    assert len(set(samples)) == 1, "connections were closed and reopened"
    assert rss["soaked"] <= rss["warm"] * (1 + MAX_RSS_GROWTH), figures
    assert soak_server.process.poll() is None, soak_server.log()[-2000:]
