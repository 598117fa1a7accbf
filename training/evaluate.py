"""Measure the artifact's accuracy per condition and its out-of-distribution flags.

Run: ``python -m training.evaluate`` (prints a table, writes
``model_artifacts/evaluation.json`` and adds the report to the metadata; exits
with 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.conditions import CONDITIONS, OUTLIER_KINDS, UNSEEN_KINDS, draw_outliers
from training.data import CLASS_NAMES, make_rng

logger = logging.getLogger(__name__)

# Evaluation streams are seeded with (seed, EVALUATION_STREAM + i); training
# streams use (training seed, 1..4), so no evaluation waveform is a training one.
EVALUATION_STREAM = 100
DEFAULT_SEED = 2026
OUTLIER_FLAG_TARGET = 0.95
IN_DISTRIBUTION_FLAG_LIMIT = 0.005
CHUNK = 4096

Classifier = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def scripted_classifier(
    module: torch.jit.ScriptModule, device: torch.device
) -> Classifier:
    """Wrap the artifact's ``classify`` method: waveforms -> (probabilities, scores)."""

    def classify(waveforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(waveforms), CHUNK):
                chunk = torch.from_numpy(waveforms[start : start + CHUNK]).to(device)
                p, s = module.classify(chunk)
                probabilities.append(p.cpu().numpy())
                scores.append(s.cpu().numpy())
        return np.concatenate(probabilities), np.concatenate(scores)

    return classify


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """Return counts[true][predicted] over the classes."""
    size = len(CLASS_NAMES)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts.tolist()


def evaluate(
    classify: Classifier,
    threshold: float,
    samples: int = 3000,
    outliers: int = 1000,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Return accuracy and flag rates per condition, and flag rates per outlier kind."""
    conditions = []
    for index, condition in enumerate(CONDITIONS):
        batch = condition.draw(samples, make_rng((seed, EVALUATION_STREAM + index)))
        probabilities, scores = classify(batch.waveforms)
        predicted = probabilities.argmax(axis=1)
        accuracy = float((predicted == batch.labels).mean())
        flagged = float((scores > threshold).mean())
        conditions.append(
            {
                "name": condition.name,
                "description": condition.description,
                "samples": samples,
                "accuracy": accuracy,
                "target": condition.target,
                "flagged": flagged,
                "flag_limit": IN_DISTRIBUTION_FLAG_LIMIT,
                "met": accuracy >= condition.target
                and flagged <= IN_DISTRIBUTION_FLAG_LIMIT,
                "confusion": confusion_matrix(batch.labels, predicted),
            }
        )

    kinds = []
    offset = EVALUATION_STREAM + len(CONDITIONS)
    for index, kind in enumerate(OUTLIER_KINDS):
        waves = draw_outliers(kind, outliers, make_rng((seed, offset + index)))
        _, scores = classify(waves)
        flagged = float((scores > threshold).mean())
        kinds.append(
            {
                "name": kind.name,
                "description": kind.description,
                "samples": outliers,
                "flagged": flagged,
                "target": OUTLIER_FLAG_TARGET,
                "met": flagged >= OUTLIER_FLAG_TARGET,
            }
        )

    unseen = []
    offset += len(OUTLIER_KINDS)
    for index, kind in enumerate(UNSEEN_KINDS):
        waves = draw_outliers(kind, outliers, make_rng((seed, offset + index)))
        probabilities, scores = classify(waves)
        labels = probabilities.argmax(axis=1)
        unseen.append(
            {
                "name": kind.name,
                "description": kind.description,
                "samples": outliers,
                "flagged": float((scores > threshold).mean()),
                "labels": {
                    name: float((labels == i).mean())
                    for i, name in enumerate(CLASS_NAMES)
                },
            }
        )

    met = all(row["met"] for row in conditions) and all(row["met"] for row in kinds)
    return {
        "seed": seed,
        "ood_threshold": threshold,
        "conditions": conditions,
        "outliers": kinds,
        "unseen_outliers": unseen,
        "all_targets_met": met,
    }


def format_report(report: dict[str, Any]) -> str:
    """Return the report as two plain-text tables."""
    lines = [
        f"{'condition':<18} {'samples':>7} {'accuracy':>9} {'target':>8} "
        f"{'flagged':>8}  met",
    ]
    for row in report["conditions"]:
        lines.append(
            f"{row['name']:<18} {row['samples']:>7} {row['accuracy']:>9.2%} "
            f"{row['target']:>8.1%} {row['flagged']:>8.2%}  "
            f"{'yes' if row['met'] else 'NO'}"
        )
    lines.append("")
    lines.append(
        f"{'outlier kind':<18} {'samples':>7} {'flagged':>9} {'target':>8}  met"
    )
    for row in report["outliers"]:
        lines.append(
            f"{row['name']:<18} {row['samples']:>7} {row['flagged']:>9.2%} "
            f"{row['target']:>8.0%}  {'yes' if row['met'] else 'NO'}"
        )
    lines.append("")
    lines.append(f"{'never trained on':<18} {'samples':>7} {'flagged':>9}  (no target)")
    for row in report["unseen_outliers"]:
        lines.append(f"{row['name']:<18} {row['samples']:>7} {row['flagged']:>9.2%}")
    lines.append("")
    lines.append(
        "every target met" if report["all_targets_met"] else "SOME TARGETS MISSED"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command-line options."""
    from app.config import DEFAULT_MODEL_PATH

    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model-path",
        type=Path,
        default=DEFAULT_MODEL_PATH,
        help="artifact to evaluate",
    )
    parser.add_argument(
        "--samples", type=int, default=3000, help="waveforms per condition"
    )
    parser.add_argument(
        "--outliers", type=int, default=1000, help="waveforms per outlier kind"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="evaluation seed"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; write no report"
    )
    return parser.parse_args(argv)


def run(
    model_path: Path, samples: int, outliers: int, seed: int, write: bool
) -> dict[str, Any]:
    """Evaluate the artifact at ``model_path``; optionally write the report files."""
    from app.artifact import load_model, metadata_path_for
    from training.export import write_metadata

    model = load_model(model_path, "cpu")
    classify = scripted_classifier(model.module, model.device)
    report = evaluate(classify, model.ood_threshold, samples, outliers, seed)
    report["sha256"] = model.sha256
    if write:
        output_dir = model_path.parent
        (output_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
        metadata = json.loads(metadata_path_for(model_path).read_text())
        metadata["evaluation"] = {
            key: value for key, value in report.items() if key != "sha256"
        }
        write_metadata(output_dir, metadata)
    return report


def main(argv: list[str] | None = None) -> int:
    """Evaluate, print the table, and return 0 only when every target is met."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    report = run(
        args.model_path, args.samples, args.outliers, args.seed, not args.no_write
    )
    print(format_report(report))
    return 0 if report["all_targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
