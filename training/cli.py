"""Train, calibrate, export and evaluate the classifier.

Run: ``python -m training`` (the committed artifact is exactly this, with the
defaults). ``python -m training --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import plots
from training.conditions import CONDITIONS
from training.data import CLASS_NAMES, INPUT_LENGTH, generate, make_rng
from training.evaluate import format_report
from training.evaluate import run as run_evaluation
from training.export import save_artifact, script
from training.model import WaveformClassifier
from training.model_card import write_model_card
from training.ood import CALIBRATION_QUANTILE, calibrate_threshold
from training.train import OOD_CALIBRATION_STREAM, EpochRecord, TrainConfig, train

logger = logging.getLogger("training")

CALIBRATION_SAMPLES = 3000
HELP = {
    "samples": "augmented training waveforms drawn per epoch",
    "validation_samples": "waveforms in the fixed validation set",
    "epochs": "maximum number of epochs",
    "batch_size": "waveforms per optimiser step",
    "learning_rate": "peak learning rate of the one-cycle schedule",
    "weight_decay": "AdamW weight decay",
    "hidden_size": "LSTM hidden units",
    "outlier_fraction": "outliers added per batch, as a fraction of the batch size",
    "outlier_weight": "weight of the outlier-exposure losses",
    "patience": "epochs without validation improvement before stopping",
    "seed": "seed of every random stream in training",
    "threads": "torch intra-op threads",
    "output_dir": "folder that receives the artifact, metadata, plots and model card",
}


def parse_config(argv: list[str] | None) -> TrainConfig:
    """Build the training configuration from command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the hand-written LSTM waveform classifier and export it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=HELP[field.name],
        )
    return TrainConfig(**vars(parser.parse_args(argv)))


def calibrate(model: WaveformClassifier, seed: int) -> float:
    """Return the out-of-distribution threshold from held-out waveforms."""
    rng = make_rng((seed, OOD_CALIBRATION_STREAM))
    scores = []
    with torch.inference_mode():
        for condition in CONDITIONS:
            batch = condition.draw(CALIBRATION_SAMPLES, rng)
            _, outlier_logits = model.logits_and_outlier_scores(
                torch.from_numpy(batch.waveforms)
            )
            scores.append(outlier_logits)
    return calibrate_threshold(scores)


def log_epoch(record: EpochRecord) -> None:
    """Log one epoch's figures."""
    logger.info(
        "epoch=%d train_loss=%.4f train_accuracy=%.4f validation_loss=%.4f "
        "validation_accuracy=%.4f learning_rate=%.2e seconds=%.1f",
        record.epoch,
        record.train_loss,
        record.train_accuracy,
        record.validation_loss,
        record.validation_accuracy,
        record.learning_rate,
        record.seconds,
    )


def main(argv: list[str] | None = None) -> None:
    """Train with the options in ``argv`` and write all outputs to the output folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = parse_config(argv)
    started = time.perf_counter()
    logger.info("training config=%s", json.dumps(config.to_json()))

    result = train(config, on_epoch=log_epoch)
    logger.info(
        "trained seconds=%.1f best_epoch=%d best_validation_accuracy=%.4f",
        result.seconds,
        result.best_epoch,
        result.best_validation_accuracy,
    )
    threshold = calibrate(result.model, config.seed)
    logger.info(
        "calibrated ood_threshold=%.4f quantile=%s", threshold, CALIBRATION_QUANTILE
    )

    metadata: dict[str, Any] = {
        "class_names": list(CLASS_NAMES),
        "input_length": INPUT_LENGTH,
        "input_shape": ["batch", INPUT_LENGTH],
        "output": "probabilities",
        "hidden_size": config.hidden_size,
        "ood_method": "outlier exposure with a learned outlier head",
        "ood_threshold": threshold,
        "ood_calibration_quantile": CALIBRATION_QUANTILE,
        "training": config.to_json(),
        "seed": config.seed,
        "best_epoch": result.best_epoch,
        "validation_accuracy": result.best_validation_accuracy,
        "training_seconds": round(result.seconds, 1),
    }
    written = save_artifact(script(result.model), config.output_dir, metadata)
    artifact = config.output_dir / written["file"]
    logger.info("wrote artifact path=%s sha256=%s", artifact, written["sha256"])

    report = run_evaluation(artifact, 3000, 1000, seed=2026, write=True)
    print(format_report(report))
    write_figures(result.model, result.history, report, config.output_dir)
    history = [asdict(record) for record in result.history]
    (config.output_dir / "training_history.json").write_text(
        json.dumps(history, indent=2) + "\n"
    )
    write_model_card(config.output_dir)
    logger.info("done seconds=%.1f", time.perf_counter() - started)


def write_figures(
    model: WaveformClassifier,
    history: list[EpochRecord],
    report: dict[str, Any],
    output_dir: Path,
) -> None:
    """Write the curves, confusion matrices and per-class examples."""
    plots.plot_curves(history, output_dir / plots.CURVES_FILE)
    plots.plot_confusions(report, output_dir / plots.CONFUSION_FILE)
    examples = generate(len(CLASS_NAMES) * 8, seed=7)
    first = [
        int(np.flatnonzero(examples.labels == index)[0])
        for index in range(len(CLASS_NAMES))
    ]
    waves = examples.waveforms[first]
    with torch.inference_mode():
        probabilities = torch.softmax(model(torch.from_numpy(waves)), dim=1).numpy()
    plots.plot_examples(waves, probabilities, output_dir / plots.EXAMPLES_FILE)
