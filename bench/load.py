"""HTTP load with wrk: request bodies as Lua scripts, results read from JSON.

Each case's Lua script sets the POST body and prints one JSON line from wrk's
``done()`` hook, with the request count, duration, errors and latency
percentiles, so nothing depends on the layout of wrk's text report.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

RESULT_PREFIX = "BENCH_RESULT "
# Debian's wrk 4.1 counts a response with status > 399 in errors.status.
LUA_TEMPLATE = """\
wrk.method = "POST"
wrk.path = "{path}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{prefix}{{"requests": %d, "duration_us": %d, "status_errors": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d}}\\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


class LoadToolError(RuntimeError):
    """wrk is missing and cannot be installed, or its run failed."""


@dataclass(frozen=True)
class LoadResult:
    """wrk's measurement of one case against one server."""

    requests: int
    duration_s: float
    status_errors: int  # responses with status > 399
    socket_errors: int  # connect, read and write errors
    timeouts: int
    p50_s: float
    p99_s: float
    max_s: float

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s

    @property
    def errors(self) -> int:
        """Non-2xx responses plus socket errors and timeouts."""
        return self.status_errors + self.socket_errors + self.timeouts


def lua_string(text: str) -> str:
    """Return ``text`` as a Lua long-bracket literal that cannot end early."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def write_script(directory: Path, name: str, path: str, body: bytes) -> Path:
    """Write the Lua script that POSTs ``body`` to ``path``; return its path."""
    script = directory / f"{name}.lua"
    script.write_text(
        LUA_TEMPLATE.format(
            path=path, body=lua_string(body.decode()), prefix=RESULT_PREFIX
        )
    )
    return script


def find_wrk(install: bool = True) -> str:
    """Return the path of wrk, installing Debian's package when run as root.

    Raises:
        LoadToolError: wrk is not on PATH and cannot be installed here.
    """
    found = shutil.which("wrk")
    if found or not install:
        if found:
            return found
        raise LoadToolError("wrk is not on PATH; install it (apt-get install wrk)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LoadToolError(
            "wrk is not on PATH and this is not a root shell with apt-get; "
            "install it with `sudo apt-get install wrk` (Debian, Ubuntu)"
        )
    logger.info("installing wrk with apt-get")
    install_command = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install_command, capture_output=True).returncode != 0:
        # A fresh container has no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        completed = subprocess.run(install_command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise LoadToolError(
                f"apt-get install wrk failed: {completed.stderr.strip()[-500:]}"
            )
    found = shutil.which("wrk")
    if found is None:
        raise LoadToolError("apt-get installed wrk, but it is not on PATH")
    return found


def parse_result(output: str) -> LoadResult:
    """Read the JSON line that the script's ``done()`` printed.

    Raises:
        LoadToolError: the output has no such line.
    """
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            return LoadResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                status_errors=data["status_errors"],
                socket_errors=data["socket_errors"],
                timeouts=data["timeouts"],
                p50_s=data["p50_us"] / 1e6,
                p99_s=data["p99_us"] / 1e6,
                max_s=data["max_us"] / 1e6,
            )
    raise LoadToolError(f"wrk printed no result line; its output was:\n{output}")


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    connections: int,
    duration_s: float,
    threads: int,
) -> LoadResult:
    """Drive ``url`` with wrk for ``duration_s`` seconds and return its result.

    Raises:
        LoadToolError: wrk exited with an error or printed no result.
    """
    command = [
        wrk,
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        "--timeout=10s",
        f"--script={script}",
        url,
    ]
    # subprocess.run kills wrk if this process is interrupted while it runs.
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 60
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadToolError(
            f"wrk did not finish within 60 s after its {duration_s:.0f} s run and "
            "was killed; check that the server still responds"
        ) from exc
    if completed.returncode != 0:
        raise LoadToolError(
            f"wrk exited with {completed.returncode}: {completed.stderr.strip()}"
        )
    return parse_result(completed.stdout)
