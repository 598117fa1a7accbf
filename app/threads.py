"""How many CPUs this process may use, and torch's thread count from that."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> float | None:
    """Return the cgroup v2 CPU quota in CPUs, or None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cpus() -> int:
    """Return the CPUs this process may run on, within any container CPU limit."""
    cpus = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 1
    )
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


# Two threads let one batch gather while another runs. Each thread takes the
# GIL around every pass, which the event loop then waits for.
# NOTE: the cap of 2 was measured on 2 cores only.
MAX_DEFAULT_INFERENCE_THREADS = 2


def inference_thread_count(configured: int | None, workers: int) -> int:
    """Return the configured count, or each worker's CPUs but one, from 1 to 2.

    ``WAVECLS_INFERENCE_THREADS=0`` runs passes on the event loop instead,
    which saves the thread hand-offs but leaves health checks waiting during a
    long pass. On 2 cores with 2 workers, ``python -m bench --sweep`` could not
    tell the two apart: at 32 connections, runs with 0 threads served 6,166 to
    8,870 req/s and runs with 1 thread 5,108 to 8,155 (benchmarks/README.md).
    """
    if configured is not None:
        return configured
    share = usable_cpus() // workers
    return max(1, min(MAX_DEFAULT_INFERENCE_THREADS, share - 1))


def torch_thread_count(
    configured: int | None, workers: int, inference_threads: int = 1
) -> int:
    """Return the configured count, or a share of each worker's CPUs less one.

    Each worker keeps one CPU of its share for its event loop, which parses and
    serialises every request while torch runs, and divides the rest among its
    inference threads, or gives it to the loop's own passes when there are
    none. Measured by ``python -m bench`` on 2 cores with one worker and one
    inference thread: torch with 1 thread served 2,372 req/s at 32
    connections, with 2 threads 1,251 req/s.
    """
    if configured is not None:
        return configured
    share = usable_cpus() // workers
    return max(1, (share - 1) // max(1, inference_threads))
