"""Command line: classify the waveforms in CSV, NumPy .npy or WAV files.

    wavecls classify tone.wav                                # the committed model
    wavecls classify tone.wav --url http://127.0.0.1:8000    # a running service
    python -m app.cli classify rows.csv --format json

A waveform of exactly the model's input length is classified as is. A longer
one is cut into windows of about eight cycles of its estimated fundamental
(see ``app.windows``). Every window is classified, and the labels are put to a
majority vote.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from app.artifact import LoadedModel, StartupError, load_model
from app.client import Prediction, WaveclsClient, WaveclsError
from app.config import DEFAULT_MODEL_PATH
from app.recordings import Recording, RecordingError, read_recordings
from app.windows import TARGET_CYCLES, Windowing, WindowingError, cut_windows

logger = logging.getLogger(__name__)

# Windows per request or forward pass; the service's default batch limit is 1024.
CHUNK_WINDOWS = 256
# The model was trained and evaluated on 3 to 15 cycles per window.
MIN_CYCLES, MAX_CYCLES = 3.0, 15.0


class Classifier(Protocol):
    """Something that classifies (N, input_length) float32 windows."""

    input_length: int
    source: str

    def classify(self, windows: np.ndarray) -> list[Prediction]:
        """Return one prediction per window, in order."""
        ...


class ModelClassifier:
    """Classifies with the TorchScript artifact loaded in this process."""

    def __init__(self, path: Path, device: str) -> None:
        self.model: LoadedModel = load_model(path, device)
        self.input_length = self.model.input_length
        self.source = f"model {path} (version {self.model.version})"

    def classify(self, windows: np.ndarray) -> list[Prediction]:
        """Run the module's ``classify`` method on the windows."""
        model = self.model
        inputs = torch.from_numpy(windows).to(model.device)
        with torch.inference_mode():
            probabilities, scores = model.module.classify(inputs)
        rows = probabilities.cpu().numpy().astype(np.float64)
        rows /= rows.sum(axis=1, keepdims=True)
        return [
            Prediction(
                label=model.class_names[int(row.argmax())],
                probabilities=dict(zip(model.class_names, row.tolist(), strict=True)),
                ood_score=float(score),
                out_of_distribution=bool(score > model.ood_threshold),
                model_version=model.version,
            )
            for row, score in zip(rows, scores.cpu().numpy().tolist(), strict=True)
        ]


class ServiceClassifier:
    """Classifies through a running service's /classify."""

    def __init__(self, client: WaveclsClient, url: str) -> None:
        self.client = client
        info = client.model_info()
        self.input_length = info.input_length
        self.source = f"service {url} (model version {info.version})"

    def classify(self, windows: np.ndarray) -> list[Prediction]:
        """Send the windows as one batch."""
        return self.client.classify_batch(windows.tolist())


@dataclass(frozen=True)
class Vote:
    """The majority label over a recording's windows."""

    label: str
    agreeing: int  # windows with this label among those that voted
    voters: int  # windows that voted: the in-distribution ones, if any
    out_of_distribution: int  # windows flagged out of distribution


@dataclass(frozen=True)
class Result:
    """One recording's windowing, window predictions and vote."""

    recording: Recording
    windowing: Windowing
    predictions: list[Prediction]
    vote: Vote


def majority_vote(predictions: Sequence[Prediction]) -> Vote:
    """Return the most common label; ties go to the higher summed probability.

    Windows flagged out of distribution do not vote unless all of them are.
    """
    flagged = sum(p.out_of_distribution for p in predictions)
    voters = [p for p in predictions if not p.out_of_distribution] or list(predictions)
    counts = Counter(p.label for p in voters)
    mass = Counter[str]()
    for prediction in voters:
        mass.update({prediction.label: prediction.probabilities[prediction.label]})
    label = max(counts, key=lambda name: (counts[name], mass[name]))
    return Vote(label, counts[label], len(voters), flagged)


def analyse(
    recording: Recording, classifier: Classifier, target_cycles: float
) -> Result:
    """Cut one recording into windows, classify them and vote."""
    try:
        windowing = cut_windows(
            recording.samples, classifier.input_length, target_cycles
        )
    except WindowingError as exc:
        raise WindowingError(f"{recording.name}: {exc}") from exc

    predictions: list[Prediction] = []
    for start in range(0, len(windowing.windows), CHUNK_WINDOWS):
        chunk = windowing.windows[start : start + CHUNK_WINDOWS]
        predictions.extend(classifier.classify(chunk))
    return Result(recording, windowing, predictions, majority_vote(predictions))


def describe_windowing(result: Result, input_length: int) -> list[str]:
    """Return the report lines that describe how a recording was cut."""
    recording, windowing = result.recording, result.windowing
    rate = recording.sample_rate
    lines = [
        f"{recording.name}: {len(recording.samples)} samples"
        + (f" at {rate:g} Hz" if rate else "")
    ]
    if windowing.period is None:
        lines.append(f"  {input_length} samples: classified as is")
        return lines

    period = windowing.period
    frequency = f"{rate / period:.1f} Hz, " if rate else ""
    cycles = windowing.window_length / period
    lines.append(
        f"  estimated f0: {frequency}period {period:.2f} samples (autocorrelation)"
    )
    lines.append(
        f"  {len(windowing.starts)} windows of {windowing.window_length} samples "
        f"({cycles:.1f} cycles) resampled to {input_length} by linear "
        f"interpolation; {windowing.leftover} samples left over"
    )
    if not MIN_CYCLES <= cycles <= MAX_CYCLES:
        lines.append(
            f"  warning: {cycles:.1f} cycles per window is outside the "
            f"{MIN_CYCLES:g}-{MAX_CYCLES:g} the model was trained on"
        )
    return lines


def render_table(results: Sequence[Result], class_names: Sequence[str]) -> str:
    """Return a plain-text report: windowing, one row per window, and the vote."""
    input_length = len(results[0].windowing.windows[0])
    lines: list[str] = []
    header = ["window", "start", "label", *class_names, "ood_score", "ood"]
    for result in results:
        lines.extend(describe_windowing(result, input_length))
        lines.append("  " + "  ".join(f"{name:>9}" for name in header))
        for index, (start, prediction) in enumerate(
            zip(result.windowing.starts, result.predictions, strict=True)
        ):
            cells = [
                f"{index:>9}",
                f"{start:>9}",
                f"{prediction.label:>9}",
                *(f"{prediction.probabilities[name]:>9.3f}" for name in class_names),
                f"{prediction.ood_score:>9.2f}",
                f"{'yes' if prediction.out_of_distribution else 'no':>9}",
            ]
            lines.append("  " + "  ".join(cells))
        vote = result.vote
        lines.append(
            f"  vote: {vote.label} ({vote.agreeing} of {vote.voters} windows; "
            f"{vote.out_of_distribution} of {len(result.predictions)} out of "
            "distribution)"
        )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def render_json(results: Sequence[Result], source: str) -> str:
    """Return the report as JSON."""
    recordings: list[dict[str, Any]] = []
    for result in results:
        windowing, rate = result.windowing, result.recording.sample_rate
        period = windowing.period
        recordings.append(
            {
                "name": result.recording.name,
                "samples": len(result.recording.samples),
                "sample_rate_hz": rate,
                "period_samples": period,
                "f0_hz": rate / period if rate and period else None,
                "window_length": windowing.window_length,
                "cycles_per_window": windowing.window_length / period
                if period
                else None,
                "leftover_samples": windowing.leftover,
                "windows": [
                    {"start": start, **_prediction_fields(prediction)}
                    for start, prediction in zip(
                        windowing.starts, result.predictions, strict=True
                    )
                ],
                "vote": {
                    "label": result.vote.label,
                    "agreeing": result.vote.agreeing,
                    "voters": result.vote.voters,
                    "out_of_distribution": result.vote.out_of_distribution,
                },
            }
        )
    return json.dumps({"source": source, "recordings": recordings}, indent=2)


def _prediction_fields(prediction: Prediction) -> dict[str, Any]:
    return {
        "label": prediction.label,
        "probabilities": prediction.probabilities,
        "ood_score": prediction.ood_score,
        "out_of_distribution": prediction.out_of_distribution,
    }


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wavecls``."""
    parser = argparse.ArgumentParser(
        prog="wavecls", description="Classify waveforms as sine, square or sawtooth."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser(
        "classify",
        help="classify the waveforms in a CSV, .npy or WAV file",
        description="Classify every waveform in FILE. A waveform of exactly the "
        "model's input length is classified as is; a longer one is cut into "
        "windows of a few cycles of its estimated fundamental, and the window "
        "labels are put to a majority vote.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    classify.add_argument(
        "file", type=Path, help="CSV (a waveform per row, or one column), .npy or WAV"
    )

    target = classify.add_mutually_exclusive_group()
    target.add_argument("--url", help="classify with the service at this URL")
    target.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL_PATH,
        help="classify in this process with this TorchScript artifact",
    )
    classify.add_argument(
        "--device", default="cpu", help="torch device for --model: cpu, cuda, auto"
    )
    classify.add_argument("--token", help="bearer token for --url")
    classify.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request with --url"
    )
    classify.add_argument(
        "--cycles",
        type=float,
        default=TARGET_CYCLES,
        help=f"cycles per window for long recordings ({MIN_CYCLES:g} to "
        f"{MAX_CYCLES:g})",
    )
    classify.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def run_classify(args: argparse.Namespace) -> str:
    """Classify the file named in ``args`` and return the report."""
    if not MIN_CYCLES <= args.cycles <= MAX_CYCLES:
        raise WindowingError(
            f"--cycles {args.cycles:g} is outside {MIN_CYCLES:g} to {MAX_CYCLES:g}, "
            "the range the model was trained on"
        )
    recordings = read_recordings(args.file)

    if args.url:
        with WaveclsClient(args.url, timeout=args.timeout, token=args.token) as client:
            classifier: Classifier = ServiceClassifier(client, args.url)
            results = [analyse(r, classifier, args.cycles) for r in recordings]
            class_names = client.model_info().class_names
    else:
        model_classifier = ModelClassifier(args.model, args.device)
        class_names = list(model_classifier.model.class_names)
        classifier = model_classifier
        results = [analyse(r, classifier, args.cycles) for r in recordings]

    if args.format == "json":
        return render_json(results, classifier.source)
    return f"source: {classifier.source}\n\n" + render_table(results, class_names)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    logging.basicConfig(level=logging.WARNING, format="wavecls: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        report = run_classify(args)
    except (RecordingError, WindowingError, StartupError, WaveclsError) as exc:
        print(f"wavecls: error: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
