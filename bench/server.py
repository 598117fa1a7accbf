"""Start an ASGI app as a real uvicorn process on 127.0.0.1 and stop it by PID."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
READY_PATH = "/health/ready"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The settings under test: every server, service or trivial, gets the same.
UVICORN_FLAGS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")


class ServerError(RuntimeError):
    """A server exited early or did not become ready in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_status(port: int, path: str, timeout_s: float = 2.0) -> int:
    """Return the status of ``GET path`` on 127.0.0.1:``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces, so the fields are
        # read after its closing parenthesis.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def rss_bytes(pid: int) -> int:
    """Return the resident set size of ``pid``, or 0 once it has exited."""
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * PAGE_SIZE


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of ``pid``, or 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat, and fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Server:
    """A uvicorn process serving one app, started by this benchmark."""

    name: str
    app: str
    env: dict[str, str]
    workers: int
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """Return the uvicorn command line."""
        command = [sys.executable, "-m", "uvicorn", self.app, *UVICORN_FLAGS]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        return command

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the process and wait until ``/health/ready`` returns 200.

        ``startup_s`` is the time from starting the process to that first 200.

        Raises:
            ServerError: the process exited or was not ready within ``timeout_s``.
        """
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            started = time.perf_counter()
            # A session of its own: Ctrl-C reaches only this benchmark, which
            # then stops the server in order.
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        logger.info("started server=%s pid=%d port=%d", self.name, self.pid, self.port)
        self._wait_until_ready(started, timeout_s)

    @property
    def pid(self) -> int:
        """Process id of the uvicorn process this benchmark started."""
        assert self.process is not None
        return self.process.pid

    def _wait_until_ready(self, started: float, timeout_s: float) -> None:
        assert self.process is not None
        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise ServerError(
                    f"server {self.name} exited with {self.process.returncode}; "
                    f"its log is {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if get_status(self.port, READY_PATH, timeout_s=1.0) == 200:
                    self.startup_s = time.perf_counter() - started
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise ServerError(
            f"server {self.name} was not ready within {timeout_s} s; "
            f"its log is {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, characters: int = 3000) -> str:
        """Return the end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """Return the processes that serve requests: the children of a supervisor."""
        tree = process_tree(self.pid)
        return tree[1:] if self.workers > 1 and len(tree) > 1 else tree[:1]

    def cpu_seconds(self) -> float:
        """Return the CPU time used so far by the serving processes."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server with SIGTERM, then SIGKILL to its session if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(
                "server did not stop on SIGTERM within %.0f s; killing pid=%d",
                timeout_s,
                self.pid,
            )
            # The session id is the PID started here, and its group contains the
            # workers.
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        logger.info("stopped server=%s pid=%d", self.name, self.pid)


class _BackgroundLoop:
    """Run ``_run`` on a daemon thread for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class RssSampler(_BackgroundLoop):
    """Sample the largest RSS of a server's serving processes in the background."""

    def __init__(self, server: Server, interval_s: float = 0.1) -> None:
        self.server = server
        self.interval_s = interval_s
        self.max_rss_bytes = 0
        super().__init__()

    def _run(self) -> None:
        pids = self.server.worker_pids()
        while not self._stop.is_set():
            for pid in pids:
                self.max_rss_bytes = max(self.max_rss_bytes, rss_bytes(pid))
            self._stop.wait(self.interval_s)


class HealthProbe(_BackgroundLoop):
    """Time ``GET /health/live`` in the background while a load runs."""

    def __init__(self, port: int, interval_s: float = 0.2) -> None:
        self.port = port
        self.interval_s = interval_s
        self.latencies_s: list[float] = []
        self.failures = 0
        super().__init__()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.perf_counter()
            try:
                status = get_status(self.port, "/health/live", timeout_s=5.0)
            except OSError:
                status = 0
            if status == 200:
                self.latencies_s.append(time.perf_counter() - started)
            else:
                self.failures += 1
