"""torch's thread count from CPU affinity, the cgroup CPU quota and the workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app import threads
from app.config import DEFAULT_MODEL_PATH, Settings
from app.lifecycle import configure_threads
from app.main import create_app
from app.threads import (
    cgroup_cpu_limit,
    inference_thread_count,
    torch_thread_count,
    usable_cpus,
)


def _cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200000 100000\n", 2.0),
        ("150000 100000\n", 1.5),
        ("50000 100000\n", 0.5),
        ("100000 50000", 2.0),
    ],
)
def test_cgroup_cpu_limit_reads_quota(
    tmp_path: Path, text: str, expected: float
) -> None:
    limit = cgroup_cpu_limit(_cpu_max(tmp_path, text))
    assert limit == expected, f"cpu.max {text!r} gave {limit}"


def test_cgroup_cpu_limit_max_is_unlimited(tmp_path: Path) -> None:
    limit = cgroup_cpu_limit(_cpu_max(tmp_path, "max 100000\n"))
    assert limit is None, f"'max' quota gave {limit}"


def test_cgroup_cpu_limit_missing_file(tmp_path: Path) -> None:
    limit = cgroup_cpu_limit(tmp_path / "absent" / "cpu.max")
    assert limit is None, f"missing cpu.max gave {limit}"


@pytest.mark.parametrize("text", ["", "garbage\n", "max\n"])
def test_cgroup_cpu_limit_unreadable_content(tmp_path: Path, text: str) -> None:
    limit = cgroup_cpu_limit(_cpu_max(tmp_path, text))
    assert limit is None, f"cpu.max {text!r} gave {limit}"


@pytest.mark.parametrize("text", ["many words here\n", "100000 0\n"])
def test_cgroup_cpu_limit_malformed_numbers(tmp_path: Path, text: str) -> None:
    limit = cgroup_cpu_limit(_cpu_max(tmp_path, text))
    assert limit is None, f"cpu.max {text!r} gave {limit}"


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Pretend the process may run on CPUs 0 to 7 with no cgroup quota."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    yield monkeypatch


def test_usable_cpus_uses_affinity(eight_cpus: pytest.MonkeyPatch) -> None:
    assert usable_cpus() == 8


@pytest.mark.parametrize(
    ("quota", "expected"), [(2.0, 2), (1.5, 2), (0.5, 1), (0.01, 1), (64.0, 8)]
)
def test_usable_cpus_within_cgroup_quota(
    eight_cpus: pytest.MonkeyPatch, quota: float, expected: int
) -> None:
    eight_cpus.setattr(threads, "cgroup_cpu_limit", lambda: quota)
    cpus = usable_cpus()
    assert cpus == expected, f"quota {quota} CPUs on 8 CPUs gave {cpus}"


@pytest.mark.parametrize(
    ("workers", "expected"), [(1, 7), (2, 3), (3, 1), (8, 1), (16, 1)]
)
def test_torch_thread_count_divides_among_workers(
    eight_cpus: pytest.MonkeyPatch, workers: int, expected: int
) -> None:
    count = torch_thread_count(None, workers)
    assert count == expected, f"{workers} workers on 8 CPUs gave {count}"


@pytest.mark.parametrize(
    ("workers", "inference_threads", "expected"),
    [(1, 2, 3), (1, 3, 2), (2, 2, 1), (1, 8, 1)],
)
def test_torch_thread_count_divides_among_inference_threads(
    eight_cpus: pytest.MonkeyPatch, workers: int, inference_threads: int, expected: int
) -> None:
    count = torch_thread_count(None, workers, inference_threads)
    assert count == expected, (
        f"{workers} workers with {inference_threads} inference threads on 8 CPUs "
        f"gave {count}"
    )


@pytest.mark.parametrize(
    ("workers", "expected"), [(1, 2), (2, 2), (4, 1), (8, 1), (16, 1)]
)
def test_inference_thread_count_default(
    eight_cpus: pytest.MonkeyPatch, workers: int, expected: int
) -> None:
    count = inference_thread_count(None, workers)
    assert count == expected, f"{workers} workers on 8 CPUs gave {count}"


def test_inference_thread_count_configured_override(
    eight_cpus: pytest.MonkeyPatch,
) -> None:
    assert inference_thread_count(5, workers=4) == 5


def test_torch_thread_count_divides_quota(eight_cpus: pytest.MonkeyPatch) -> None:
    eight_cpus.setattr(threads, "cgroup_cpu_limit", lambda: 4.0)
    count = torch_thread_count(None, 1)
    assert count == 3, f"1 worker within a 4 CPU quota gave {count}"


@pytest.mark.parametrize("configured", [1, 3, 32])
def test_torch_thread_count_configured_override(
    eight_cpus: pytest.MonkeyPatch, configured: int
) -> None:
    count = torch_thread_count(configured, workers=4)
    assert count == configured, f"WAVECLS_TORCH_THREADS={configured} gave {count}"


def test_configure_threads_sets_torch(eight_cpus: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        settings = Settings(
            model_path=DEFAULT_MODEL_PATH, torch_threads=None, workers=2
        )
        inference, count = configure_threads(settings)
        assert inference == 2, f"2 workers on 8 CPUs gave {inference} inference threads"
        assert count == 1, f"2 workers on 8 CPUs gave {count} torch threads"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_startup_log_names_configured_threads(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    logger = logging.getLogger("app")
    logger.addHandler(caplog.handler)
    try:
        with TestClient(app):
            pass
    finally:
        logger.removeHandler(caplog.handler)
    messages = [record.getMessage() for record in caplog.records]
    ready = [message for message in messages if "model ready" in message]
    assert len(ready) == 1, caplog.text
    assert "inference_threads=" in ready[0], ready[0]
    assert "torch_threads=1" in ready[0], ready[0]
