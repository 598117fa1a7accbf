"""PNG figures of a training run and its evaluation, drawn with matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.data import CLASS_NAMES, TIME  # noqa: E402
from training.train import EpochRecord  # noqa: E402

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrices.png"
EXAMPLES_FILE = "examples.png"


def plot_curves(history: Sequence[EpochRecord], path: Path) -> None:
    """Plot train and validation loss and accuracy per epoch."""
    epochs = [record.epoch for record in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r.train_loss for r in history], label="train")
    loss_axes.plot(epochs, [r.validation_loss for r in history], label="validation")
    loss_axes.set(xlabel="epoch", ylabel="loss", yscale="log", title="Loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [r.train_accuracy for r in history], label="train")
    accuracy_axes.plot(
        epochs, [r.validation_accuracy for r in history], label="validation"
    )
    accuracy_axes.set(
        xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0.3, 1.005)
    )
    accuracy_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusions(report: dict[str, Any], path: Path) -> None:
    """Draw one confusion matrix per evaluation condition."""
    rows = report["conditions"]
    columns = 4
    figure, axes_grid = plt.subplots(
        int(np.ceil(len(rows) / columns)), columns, figsize=(3.2 * columns, 6.4)
    )
    for axes, row in zip(axes_grid.flat, rows, strict=False):
        counts = np.array(row["confusion"])
        axes.imshow(counts, cmap="Blues")
        for (true, predicted), value in np.ndenumerate(counts):
            colour = "white" if value > counts.max() / 2 else "black"
            axes.text(
                predicted, true, str(value), ha="center", va="center", color=colour
            )
        axes.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=8)
        axes.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=8)
        axes.set_title(f"{row['name']} ({row['accuracy']:.2%})", fontsize=9)
        axes.set_xlabel("predicted", fontsize=8)
    for axes in list(axes_grid.flat)[len(rows) :]:
        axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_examples(waveforms: np.ndarray, probabilities: np.ndarray, path: Path) -> None:
    """Plot one waveform per class beside its predicted probabilities."""
    figure, axes_grid = plt.subplots(
        len(waveforms),
        2,
        figsize=(10, 2.4 * len(waveforms)),
        gridspec_kw={"width_ratios": [3, 1]},
    )
    for (wave_axes, bar_axes), wave, probs, name in zip(
        axes_grid, waveforms, probabilities, CLASS_NAMES, strict=True
    ):
        wave_axes.plot(TIME, wave, marker=".", markersize=3)
        wave_axes.set(title=f"generated {name}", xlabel="t")
        bar_axes.barh(CLASS_NAMES, probs, color="tab:orange")
        bar_axes.set(xlim=(0, 1), title="predicted probability")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
