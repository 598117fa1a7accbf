"""`python -m bench --quick`: the benchmark starts both servers, loads them, reports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from bench.__main__ import median_row
from bench.load import LoadResult, LoadToolError, find_wrk
from bench.report import Case, LoadRow

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CASES = {"single_c32", "single_c1", "batch64_c8"}
QUICK = [sys.executable, "-m", "bench", "--quick", "--output-dir"]
STARTED = re.compile(r"started server=(?P<name>\w+) pid=(?P<pid>\d+)")


@pytest.fixture(scope="module")
def wrk() -> str:
    """Path of wrk; the module is skipped, saying why, when it cannot be had."""
    try:
        return find_wrk()
    except LoadToolError as exc:
        pytest.skip(f"the benchmark needs wrk: {exc}")


def test_bench_quick_writes_results(wrk: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        [*QUICK, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output

    results = json.loads((tmp_path / "results.json").read_text())
    rows = {(row["case"], row["server"]): row for row in results["load"]}
    assert set(rows) == {(case, s) for case in CASES for s in ("wavecls", "trivial")}
    for (case, server), row in rows.items():
        assert row["requests"] > 0, (case, server, row)
        if server == "wavecls":
            assert row["errors"] == 0, (case, row, output)
            assert row["ratio_to_trivial"] > 0, (case, row)
            assert row["max_rss_bytes"] > 0, (case, row)

    artifact = [m for m in results["model"] if m["implementation"] == "artifact"]
    assert artifact, results["model"]
    assert all(m["max_abs_difference"] <= 1e-5 for m in artifact), artifact
    assert results["hardware"]["cpu_count"] >= 1

    report = (tmp_path / "results.md").read_text()
    assert "## Targets" in report, report
    assert "process start to /health/ready" in report, report


def test_bench_failed_start_reports(wrk: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.pt"
    command = [*QUICK, str(tmp_path), "--env", f"WAVECLS_MODEL_PATH={missing}"]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "benchmark failed: server wavecls exited" in output, output
    assert f"model artifact not found at {missing}" in output, output
    assert not (tmp_path / "results.json").exists()


def _read_started_pids(stream: IO[str], lines: list[str]) -> dict[str, int]:
    # Reads the bench's log until both servers have started, or it ends.
    pids: dict[str, int] = {}
    deadline = time.monotonic() + 90
    while "trivial" not in pids and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        match = STARTED.search(line)
        if match:
            pids[match["name"]] = int(match["pid"])
    return pids


def test_bench_sigterm_stops_servers(wrk: str, tmp_path: Path) -> None:
    lines: list[str] = []
    with subprocess.Popen(
        [*QUICK, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        try:
            pids = _read_started_pids(process.stderr, lines)
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
        lines.append(process.stderr.read())
    output = "".join(lines)

    assert set(pids) == {"wavecls", "trivial"}, output
    assert code == 130, output
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert f"stopped server={name} pid={pid}" in output, output


def test_bench_inprocess_reports_cpu(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "--requests", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    match = re.search(r"requests=64 concurrency=32 loop_cpu_us=([\d.]+)", output)
    assert match, output
    assert float(match[1]) > 0, output


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_bench_median_run_of_repeats(order: tuple[int, int, int]) -> None:
    case = Case("single_c32", 1, 32, 1)
    counts = [(3000, 0), (5000, 2), (7000, 1)]  # (requests in 1 s, status errors)

    def run(requests: int, errors: int) -> LoadRow:
        result = LoadResult(requests, 1.0, errors, 0, 0, 0.004, 0.009, 0.02)
        return LoadRow(case, "wavecls", "workers=2", result, 0.5, 1 << 28, None)

    runs = [run(*counts[index]) for index in order]
    median = median_row(runs)

    assert median.result.requests == 5000, median
    assert sorted(median.runs_requests_per_s) == [3000.0, 5000.0, 7000.0]
    assert median.errors == 3, "errors of the other runs were dropped"
