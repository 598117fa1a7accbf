"""Tables, targets and the results files of one benchmark run."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.load import LoadResult
from bench.model import ModelTiming

MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One load: waveforms per request and concurrent connections."""

    name: str
    waveforms_per_request: int
    connections: int
    wrk_threads: int

    @property
    def description(self) -> str:
        """Human-readable load."""
        noun = "waveform" if self.waveforms_per_request == 1 else "waveforms"
        return (
            f"{self.waveforms_per_request} {noun}/request, "
            f"{self.connections} connection{'s' if self.connections > 1 else ''}"
        )


@dataclass(frozen=True)
class LoadRow:
    """One case against one server under one set of server settings."""

    case: Case
    server: str  # "wavecls" or "trivial"
    settings: str  # label of the settings, such as "workers=1 torch_threads=2"
    result: LoadResult
    server_cpu_s: float  # CPU time of the serving processes during the run
    max_rss_bytes: int
    health_max_s: float | None  # slowest GET /health/live during the run
    # Requests/s of every repeated run of this case, when it was repeated; the
    # row itself is the median run.
    runs_requests_per_s: tuple[float, ...] = ()
    # Error responses in the repeated runs other than the median one.
    other_runs_errors: int = 0

    @property
    def errors(self) -> int:
        """Error responses in every run of this case."""
        return self.result.errors + self.other_runs_errors

    @property
    def waveforms_per_s(self) -> float:
        """Waveforms classified per second (nominal for the trivial app)."""
        return self.result.requests_per_s * self.case.waveforms_per_request

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU time per completed request, in microseconds."""
        return self.server_cpu_s / max(self.result.requests, 1) * 1e6


@dataclass(frozen=True)
class Target:
    """One stated target and whether this run met it."""

    name: str
    measured: str
    required: str
    met: bool


def hardware() -> dict[str, Any]:
    """Return the CPU model, core counts, software versions, load and date."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "load_average_at_start": list(os.getloadavg()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def trivial_row(rows: Sequence[LoadRow], row: LoadRow) -> LoadRow | None:
    """Return the trivial app's row for the same case and worker count."""
    workers = row.settings.split()[0]
    for other in rows:
        if (
            other.server == "trivial"
            and other.case.name == row.case.name
            and other.settings.split()[0] == workers
        ):
            return other
    return None


def ratio_to_trivial(rows: Sequence[LoadRow], row: LoadRow) -> float | None:
    """Return the row's requests/s as a fraction of the trivial app's."""
    trivial = trivial_row(rows, row)
    if trivial is None or row.server == "trivial":
        return None
    return row.result.requests_per_s / trivial.result.requests_per_s


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def load_table(rows: Sequence[LoadRow]) -> list[str]:
    """Return the load rows as Markdown table lines."""
    lines = [
        "| case | server | settings | requests/s | waveforms/s | p50 ms | p99 ms "
        "| errors | server CPU us/request | RSS MiB | ratio to trivial "
        "| slowest /health/live ms | requests/s of each run |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = ratio_to_trivial(rows, row)
        runs = ", ".join(f"{value:,.0f}" for value in row.runs_requests_per_s)
        lines.append(
            f"| {row.case.description} | {row.server} | {row.settings} "
            f"| {row.result.requests_per_s:,.0f} | {row.waveforms_per_s:,.0f} "
            f"| {_ms(row.result.p50_s)} | {_ms(row.result.p99_s)} "
            f"| {row.errors} | {row.cpu_us_per_request:,.0f} "
            f"| {row.max_rss_bytes / MIB:.0f} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} "
            f"| {_ms(row.health_max_s)} | {runs or '-'} |"
        )
    return lines


def model_table(timings: Sequence[ModelTiming]) -> list[str]:
    """Return the in-process model timings as Markdown table lines."""
    by_key = {(t.implementation, t.batch_size): t for t in timings}
    lines = [
        "| implementation | batch | us/call | waveforms/s | vs nn.LSTM "
        "| max abs diff vs eager |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for timing in timings:
        baseline = by_key.get(("nn_lstm", timing.batch_size))
        ratio = (
            "-"
            if baseline is None
            else f"{timing.waveforms_per_s / baseline.waveforms_per_s:.2f}"
        )
        lines.append(
            f"| {timing.implementation} | {timing.batch_size} "
            f"| {timing.seconds_per_call * 1e6:,.0f} "
            f"| {timing.waveforms_per_s:,.0f} | {ratio} "
            f"| {timing.max_abs_difference:.1e} |"
        )
    return lines


def _row(rows: Sequence[LoadRow], case: str, server: str = "wavecls") -> LoadRow | None:
    for row in rows:
        if row.case.name == case and row.server == server:
            return row
    return None


def model_targets(
    timings: Sequence[ModelTiming], batches: Sequence[int]
) -> list[Target]:
    """Return the model targets: >= 0.7x nn.LSTM and equal outputs to 1e-5."""
    by_key = {(t.implementation, t.batch_size): t for t in timings}
    targets = []
    for batch in batches:
        artifact = by_key.get(("artifact", batch))
        baseline = by_key.get(("nn_lstm", batch))
        if artifact is None or baseline is None:
            continue
        ratio = artifact.waveforms_per_s / baseline.waveforms_per_s
        targets.append(
            Target(
                f"artifact classify vs nn.LSTM, batch {batch}",
                f"{ratio:.2f}x",
                ">= 0.70x",
                ratio >= 0.7,
            )
        )
    difference = max(
        (t.max_abs_difference for t in timings if t.implementation == "artifact"),
        default=math.inf,
    )
    targets.append(
        Target(
            "artifact outputs vs eager hand-written model",
            f"{difference:.1e}",
            "<= 1e-05",
            difference <= 1e-5,
        )
    )
    return targets


def _throughput_targets(rows: Sequence[LoadRow]) -> list[Target]:
    targets = []
    single = _row(rows, "single_c32")
    if single is not None:
        name = single.case.description
        ratio = ratio_to_trivial(rows, single) or 0.0
        targets += [
            Target(
                f"{name}: requests/s",
                f"{single.result.requests_per_s:,.0f}",
                ">= 6,100",
                single.result.requests_per_s >= 6100,
            ),
            Target(
                f"{name}: ratio to trivial", f"{ratio:.2f}", ">= 0.70", ratio >= 0.7
            ),
            Target(
                f"{name}: p99",
                f"{single.result.p99_s * 1000:.2f} ms",
                "< 10 ms",
                single.result.p99_s < 0.010,
            ),
        ]

    alone = _row(rows, "single_c1")
    if alone is not None:
        targets.append(
            Target(
                f"{alone.case.description}: p50",
                f"{alone.result.p50_s * 1000:.3f} ms",
                "< 0.6 ms",
                alone.result.p50_s < 0.0006,
            )
        )

    batch = _row(rows, "batch64_c8")
    if batch is not None:
        targets.append(
            Target(
                f"{batch.case.description}: waveforms/s",
                f"{batch.waveforms_per_s:,.0f}",
                ">= 37,000",
                batch.waveforms_per_s >= 37000,
            )
        )
    return targets


def _process_targets(rows: Sequence[LoadRow], startup_s: float) -> list[Target]:
    service_rows = [row for row in rows if row.server == "wavecls"]
    errors = sum(row.errors for row in service_rows)
    rss = max((row.max_rss_bytes for row in service_rows), default=0)
    return [
        Target("errors in all wavecls cases", str(errors), "0", errors == 0),
        Target(
            "worker RSS under load",
            f"{rss / MIB:.0f} MiB",
            "< 350 MB",
            0 < rss < 350e6,
        ),
        Target(
            "process start to /health/ready",
            f"{startup_s:.2f} s",
            "< 5 s",
            startup_s < 5.0,
        ),
    ]


def load_targets(rows: Sequence[LoadRow], startup_s: float) -> list[Target]:
    """Return the serving targets that the main run's rows can show."""
    return _throughput_targets(rows) + _process_targets(rows, startup_s)


def targets_table(targets: Sequence[Target]) -> list[str]:
    """Return the targets as Markdown table lines."""
    lines = ["| target | measured | required | met |", "|---|---:|---:|:---:|"]
    lines += [
        f"| {t.name} | {t.measured} | {t.required} | {'yes' if t.met else 'NO'} |"
        for t in targets
    ]
    return lines


def _case_score(row: LoadRow) -> float:
    # Higher is better: latency for one connection, throughput otherwise.
    if row.case.connections == 1:
        return 1 / row.result.p50_s
    return row.waveforms_per_s


def recommend(rows: Sequence[LoadRow]) -> tuple[str | None, list[str]]:
    """Return the settings with the best geometric mean over cases, and why.

    Each case's score (throughput, or 1/p50 with one connection) is divided by
    the best score of that case, so every case weighs the same.
    """
    service = [row for row in rows if row.server == "wavecls" and not row.errors]
    cases = sorted({row.case.name for row in service})
    best = {
        case: max(_case_score(row) for row in service if row.case.name == case)
        for case in cases
    }
    scores: dict[str, list[float]] = {}
    for row in service:
        scores.setdefault(row.settings, []).append(
            _case_score(row) / best[row.case.name]
        )
    complete = {s: v for s, v in scores.items() if len(v) == len(cases)}
    if not complete:
        return None, []
    means = {
        settings: math.exp(sum(math.log(v) for v in values) / len(values))
        for settings, values in complete.items()
    }
    ranked = sorted(means, key=means.__getitem__, reverse=True)
    lines = [
        f"- `{settings}`: {means[settings]:.2f} of the best" for settings in ranked
    ]
    return ranked[0], lines


def write_results(
    output_dir: Path,
    info: dict[str, Any],
    timings: Sequence[ModelTiming],
    rows: Sequence[LoadRow],
    sweep_rows: Sequence[LoadRow],
    targets: Sequence[Target],
) -> tuple[Path, Path]:
    """Write results.json and results.md into ``output_dir``; return both paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    recommended, ranking = recommend(sweep_rows)
    data = {
        **info,
        "model": [{**asdict(t), "waveforms_per_s": t.waveforms_per_s} for t in timings],
        "load": [_row_json(rows, row) for row in rows],
        "sweep": [_row_json(sweep_rows, row) for row in sweep_rows],
        "recommended_settings": recommended,
        "targets": [asdict(t) for t in targets],
    }
    json_path = output_dir / "results.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path = output_dir / "results.md"
    md_path.write_text(
        markdown(info, timings, rows, sweep_rows, targets, recommended, ranking)
    )
    return json_path, md_path


def _row_json(rows: Sequence[LoadRow], row: LoadRow) -> dict[str, Any]:
    return {
        "case": row.case.name,
        "description": row.case.description,
        "server": row.server,
        "settings": row.settings,
        **asdict(row.result),
        "requests_per_s": row.result.requests_per_s,
        "waveforms_per_s": row.waveforms_per_s,
        "errors": row.errors,
        "runs_requests_per_s": list(row.runs_requests_per_s),
        "server_cpu_us_per_request": row.cpu_us_per_request,
        "max_rss_bytes": row.max_rss_bytes,
        "health_max_s": row.health_max_s,
        "ratio_to_trivial": ratio_to_trivial(rows, row),
    }


def markdown(
    info: dict[str, Any],
    timings: Sequence[ModelTiming],
    rows: Sequence[LoadRow],
    sweep_rows: Sequence[LoadRow],
    targets: Sequence[Target],
    recommended: str | None,
    ranking: Sequence[str],
) -> str:
    """Return the Markdown report of one run."""
    machine = info["hardware"]
    lines = [
        "# wavecls benchmark",
        "",
        f"Run with `{info['command']}` on {machine['date']}.",
        "",
        f"- CPU: {machine['cpu_model']}, {machine['cpu_count']} logical cores "
        f"({machine['usable_cpus']} usable)",
        f"- torch {machine['torch']}, Python {machine['python']}, "
        f"Linux {machine['kernel']}",
        "- load average (1, 5, 15 min) at start: "
        + ", ".join(f"{v:.2f}" for v in machine["load_average_at_start"])
        + "; the benchmark, the servers and wrk share these cores",
        f"- server: `{info['server_command']}`",
        f"- wavecls environment: `{info['service_env']}`",
        f"- each case: {info['warmup_s']:g} s warm-up, then "
        f"{info.get('repeats', 1)} runs of {info['duration_s']:g} s per server, "
        "measured with wrk (one thread) over loopback, alternating the servers; "
        "each row is the median run by requests/s",
        "",
        "## Targets",
        "",
        *targets_table(targets),
        "",
        "## Serving",
        "",
        "Ratio to trivial: requests/s over those of `bench/trivial_app.py` (a "
        "FastAPI route that returns a constant) under the same server settings, "
        "in the same run. Server CPU is the serving processes' user plus system "
        "time per request, which background load disturbs less than throughput.",
        "",
        *load_table(rows),
        "",
        "## Model in process",
        "",
        "One torch thread, median of interleaved rounds. `artifact` is the "
        "committed TorchScript file's `classify` (nn.LSTM's fused kernel); "
        "`nn_lstm` is eager `torch.nn.LSTM` with the same weights and heads; "
        "`loop_scripted` is the hand-written per-step loop under "
        "`torch.jit.script`; `loop_eager` is the model as trained, whose outputs "
        "are the reference.",
        "",
        *model_table(timings),
        "",
    ]
    if sweep_rows:
        lines += [
            "## Worker and thread settings",
            "",
            *load_table(sweep_rows),
            "",
            "Settings ranked by the geometric mean over cases of each case's "
            "score (waveforms/s, or 1/p50 with one connection) relative to the "
            "best:",
            "",
            *ranking,
            "",
            f"Recommended on this machine: `{recommended}`.",
            "",
        ]
    return "\n".join(lines)


def print_summary(
    timings: Sequence[ModelTiming],
    rows: Sequence[LoadRow],
    sweep_rows: Sequence[LoadRow],
    targets: Sequence[Target],
) -> None:
    """Print the tables and the targets to standard output."""
    sections = [
        ("Serving", load_table(rows)),
        ("Model in process (one thread)", model_table(timings)),
    ]
    if sweep_rows:
        sections.append(("Worker and thread settings", load_table(sweep_rows)))
    sections.append(("Targets", targets_table(targets)))
    for title, table in sections:
        print(f"\n{title}\n" + "\n".join(table))
