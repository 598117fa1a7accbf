"""Benchmark the model in process and the service over HTTP: `python -m bench`.

Starts wavecls and a trivial FastAPI app (``bench/trivial_app.py``) as uvicorn
processes on 127.0.0.1 with the same server settings, drives both with wrk, and
writes ``benchmarks/results.json`` and ``benchmarks/results.md``. Every process
it starts is stopped by PID on exit, Ctrl-C and failure included.

    python -m bench                  # about 2 minutes
    python -m bench --sweep          # also compares workers and torch threads
    python -m bench --quick --output-dir /tmp/bench   # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import orjson

from app.config import DEFAULT_MODEL_PATH
from app.threads import usable_cpus
from bench.load import LoadToolError, find_wrk, run_wrk, write_script
from bench.model import run_model_benchmark
from bench.report import (
    Case,
    LoadRow,
    hardware,
    load_targets,
    model_targets,
    print_summary,
    write_results,
)
from bench.server import HealthProbe, RssSampler, Server, ServerError
from training.data import generate

logger = logging.getLogger("bench")

SERVICE_APP = "app.main:app"
TRIVIAL_APP = "bench.trivial_app:app"
BODY_SEED = 20_241_204
# One wrk thread per case: on 2 cores a second one took CPU from the servers,
# and the trivial app served 6,087 req/s at 32 connections against 6,621.
CASES = (
    Case("single_c32", 1, 32, 1),
    Case("single_c1", 1, 1, 1),
    Case("batch64_c8", 64, 8, 1),
)
# Quick mode: the same shapes with a small batch, to show the script works.
QUICK_CASES = (
    Case("single_c32", 1, 32, 1),
    Case("single_c1", 1, 1, 1),
    Case("batch64_c8", 16, 8, 1),
)
MODEL_BATCHES = (1, 64, 512)
DEFAULT_OUTPUT = Path("benchmarks")
QUICK_OUTPUT = Path("test-output/bench-quick")
QUICK_MODEL_BATCHES = (1, 16)


@dataclass(frozen=True)
class Settings:
    """Server settings of one run: uvicorn workers and the service's environment."""

    workers: int
    env: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """Short name: the worker count, then the non-default variables."""
        parts = [f"workers={self.workers}"]
        parts += [f"{key.removeprefix('WAVECLS_').lower()}={v}" for key, v in self.env]
        return " ".join(parts)

    def service_env(self) -> dict[str, str]:
        """Return the service's environment variables."""
        return {
            "WAVECLS_DEVICE": "cpu",
            "WAVECLS_WORKERS": str(self.workers),
            **dict(self.env),
        }


class TerminatedError(BaseException):
    """SIGTERM arrived; raised so that every started process is stopped.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception``
    on the way swallows it (the logging module's handlers catch Exception).
    """


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser, with run, sweep and output options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    run = parser.add_argument_group("main run")
    run.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per run"
    )
    run.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per case and server, alternating the servers; the median run "
        "by requests/s is reported",
    )
    run.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds before each case"
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="1 s cases without warm-up, small batches: shows that the script works",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=usable_cpus(),
        help="uvicorn workers of the main run; one per usable CPU gave the best "
        "figures on 2 cores",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="WAVECLS_NAME=VALUE",
        help="service setting for the main run; repeat for several",
    )

    sweep = parser.add_argument_group("settings sweep")
    sweep.add_argument(
        "--sweep",
        action="store_true",
        help="also run every combination of --sweep-workers and "
        "--sweep-inference-threads",
    )
    sweep.add_argument("--sweep-workers", default="1,2", help="uvicorn worker counts")
    sweep.add_argument(
        "--sweep-inference-threads",
        default="0,1,2",
        help="inference thread counts (WAVECLS_INFERENCE_THREADS)",
    )
    sweep.add_argument(
        "--sweep-duration",
        type=float,
        default=5.0,
        help="measured seconds per case of the sweep",
    )

    files = parser.add_argument_group("files")
    files.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where results.json and results.md go; --quick writes to "
        f"{QUICK_OUTPUT} unless this is given",
    )
    files.add_argument(
        "--model-path", type=Path, default=DEFAULT_MODEL_PATH, help="artifact to time"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; --quick shortens every case."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and args.output_dir == DEFAULT_OUTPUT:
        args.output_dir = QUICK_OUTPUT
    if args.quick:
        args.duration, args.warmup, args.sweep_duration = 1.0, 0.0, 1.0
        args.repeats = 1
    for item in args.env:
        if not item.startswith("WAVECLS_") or "=" not in item:
            parser.error(
                f"--env {item!r} is invalid: expected WAVECLS_NAME=VALUE, "
                "such as WAVECLS_INFERENCE_THREADS=1"
            )
    return args


def request_body(waveforms: int) -> bytes:
    """Return a /classify body of ``waveforms`` generated waveforms (fixed seed)."""
    rows = generate(waveforms, BODY_SEED).waveforms.tolist()
    if waveforms == 1:
        return orjson.dumps({"waveform": rows[0]})
    return orjson.dumps({"waveforms": rows})


def run_case(
    wrk: str,
    server: Server,
    settings: Settings,
    case: Case,
    script: Path,
    duration_s: float,
    warmup_s: float,
) -> LoadRow:
    """Warm up, then measure one case against one running server."""
    url = f"{server.url}/classify"
    if warmup_s > 0:
        run_wrk(wrk, url, script, case.connections, warmup_s, case.wrk_threads)
    cpu_before = server.cpu_seconds()
    with RssSampler(server) as rss, HealthProbe(server.port) as health:
        result = run_wrk(
            wrk, url, script, case.connections, duration_s, case.wrk_threads
        )
    row = LoadRow(
        case=case,
        server=server.name,
        settings=settings.label,
        result=result,
        server_cpu_s=server.cpu_seconds() - cpu_before,
        max_rss_bytes=rss.max_rss_bytes,
        health_max_s=max(health.latencies_s, default=None),
    )
    logger.info(
        "case=%s server=%s settings=%r requests_per_s=%.0f p50_ms=%.2f "
        "p99_ms=%.2f errors=%d",
        case.name,
        server.name,
        settings.label,
        result.requests_per_s,
        result.p50_s * 1000,
        result.p99_s * 1000,
        result.errors,
    )
    return row


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server`` and stop it by PID however the block ends."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


def median_row(runs: Sequence[LoadRow]) -> LoadRow:
    """Return the run with the median requests/s, listing every run's figure."""
    ordered = sorted(runs, key=lambda row: row.result.requests_per_s)
    median = ordered[(len(ordered) - 1) // 2]
    return replace(
        median,
        runs_requests_per_s=tuple(row.result.requests_per_s for row in runs),
        other_runs_errors=sum(row.result.errors for row in runs) - median.result.errors,
    )


def run_load(
    wrk: str,
    settings: Settings,
    cases: Sequence[Case],
    scripts: dict[str, Path],
    log_dir: Path,
    duration_s: float,
    warmup_s: float,
    with_trivial: bool = True,
    repeats: int = 1,
) -> tuple[list[LoadRow], float]:
    """Run every case against wavecls and the trivial app, alternating per run.

    With ``repeats`` above 1, each case runs that often against each server,
    alternating the servers, and its row is the median run by requests/s.
    Each wrk run opens new connections, so the runs also differ in how the
    connections fall on the workers. Returns the rows and wavecls's startup
    time.
    """
    tag = settings.label.replace(" ", "_").replace("=", "")
    service = Server(
        "wavecls",
        SERVICE_APP,
        settings.service_env(),
        settings.workers,
        log_dir / f"wavecls_{tag}.log",
    )
    trivial = Server(
        "trivial", TRIVIAL_APP, {}, settings.workers, log_dir / f"trivial_{tag}.log"
    )
    rows = []
    with ExitStack() as stack:
        stack.enter_context(running(service))
        servers = [service]
        if with_trivial:
            servers.append(stack.enter_context(running(trivial)))
        for case in cases:
            runs: dict[str, list[LoadRow]] = {server.name: [] for server in servers}
            for repeat in range(repeats):
                for server in servers:
                    row = run_case(
                        wrk,
                        server,
                        settings,
                        case,
                        scripts[case.name],
                        duration_s,
                        warmup_s if repeat == 0 else 0.0,
                    )
                    runs[server.name].append(row)
            rows += [median_row(server_runs) for server_runs in runs.values()]
    return rows, service.startup_s


def sweep_settings(args: argparse.Namespace) -> list[Settings]:
    """Return every combination of the sweep's workers and inference threads."""
    return [
        Settings(int(workers), (("WAVECLS_INFERENCE_THREADS", threads.strip()),))
        for workers in args.sweep_workers.split(",")
        for threads in args.sweep_inference_threads.split(",")
    ]


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise TerminatedError(f"received signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0 when it completed, whatever the targets."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        wrk = find_wrk()
    except LoadToolError as exc:
        logger.error("cannot run the load cases: %s", exc)
        return 2

    cases = QUICK_CASES if args.quick else CASES
    pairs = (item.split("=", 1) for item in args.env)
    main_settings = Settings(args.workers, tuple((k, v) for k, v in pairs))
    info = {
        "command": shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
        "hardware": hardware(),
        "server_command": "python -m uvicorn APP --loop uvloop --http httptools "
        "--no-access-log --host 127.0.0.1 --port PORT [--workers N]",
        "service_env": " ".join(
            f"{key}={value}" for key, value in main_settings.service_env().items()
        ),
        "duration_s": args.duration,
        "repeats": args.repeats,
        "warmup_s": args.warmup,
    }

    started = time.perf_counter()
    try:
        logger.info("timing the model in process")
        batches = QUICK_MODEL_BATCHES if args.quick else MODEL_BATCHES
        timings = run_model_benchmark(
            args.model_path,
            batches,
            rounds=2 if args.quick else 7,
            round_s=0.02 if args.quick else 0.15,
        )
        with tempfile.TemporaryDirectory(prefix="wavecls-bench-") as scratch:
            directory = Path(scratch)
            scripts = {
                case.name: write_script(
                    directory,
                    case.name,
                    "/classify",
                    request_body(case.waveforms_per_request),
                )
                for case in cases
            }
            rows, startup_s = run_load(
                wrk,
                main_settings,
                cases,
                scripts,
                directory,
                args.duration,
                args.warmup,
                repeats=args.repeats,
            )
            sweep_rows: list[LoadRow] = []
            if args.sweep:
                trivial_done: set[int] = set()
                for settings in sweep_settings(args):
                    sweep_rows += run_load(
                        wrk,
                        settings,
                        cases,
                        scripts,
                        directory,
                        args.sweep_duration,
                        min(args.warmup, 1.0),
                        with_trivial=settings.workers not in trivial_done,
                    )[0]
                    trivial_done.add(settings.workers)
    except (KeyboardInterrupt, TerminatedError) as exc:
        logger.error("stopped early (%s); every started server was stopped", exc)
        return 130
    except (ServerError, LoadToolError) as exc:
        logger.error("benchmark failed: %s", exc)
        return 1

    info["hardware"]["load_average_at_end"] = list(os.getloadavg())
    info["elapsed_s"] = round(time.perf_counter() - started, 1)
    targets = model_targets(timings, (1, 512)) + load_targets(rows, startup_s)
    print_summary(timings, rows, sweep_rows, targets)
    json_path, md_path = write_results(
        args.output_dir, info, timings, rows, sweep_rows, targets
    )
    met = sum(target.met for target in targets)
    print(f"\n{met} of {len(targets)} targets met; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
