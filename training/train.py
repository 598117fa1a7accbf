"""Fit the hand-written LSTM on augmented synthetic waveforms."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.augment import draw_training_batch
from training.conditions import CONDITIONS, OUTLIER_KINDS, draw_outliers
from training.data import CLASS_NAMES, Batch, FloatArray, make_rng
from training.model import WaveformClassifier

logger = logging.getLogger(__name__)

# Independent random streams derived from the one training seed.
TRAIN_STREAM = 1
VALIDATION_STREAM = 2
OOD_CALIBRATION_STREAM = 4


@dataclass(frozen=True)
class TrainConfig:
    """Training options; the defaults produce the committed artifact."""

    samples: int = 12_000
    validation_samples: int = 3_000
    epochs: int = 35
    batch_size: int = 128
    learning_rate: float = 5e-3
    weight_decay: float = 1e-4
    hidden_size: int = 16
    outlier_fraction: float = 0.25
    outlier_weight: float = 0.5
    patience: int = 10
    seed: int = 0
    threads: int = 2
    output_dir: Path = field(default=Path("model_artifacts"))

    def to_json(self) -> dict[str, object]:
        """Return the options as JSON-compatible values."""
        values = asdict(self)
        values["output_dir"] = str(self.output_dir)
        return values


@dataclass
class EpochRecord:
    """Losses and accuracies of one epoch, and how long it took."""

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    learning_rate: float
    seconds: float


@dataclass
class TrainResult:
    """The best model and the history that led to it."""

    model: WaveformClassifier
    history: list[EpochRecord]
    best_epoch: int
    best_validation_accuracy: float
    seconds: float


def draw_validation_set(count: int, seed: int) -> Batch:
    """Draw a fixed validation set of training distortions and every condition."""
    rng = make_rng((seed, VALIDATION_STREAM))
    per_part = count // (len(CONDITIONS) + 1)
    parts = [condition.draw(per_part, rng) for condition in CONDITIONS]
    parts.append(draw_training_batch(count - per_part * len(CONDITIONS), rng))
    return Batch(
        np.concatenate([part.waveforms for part in parts]),
        np.concatenate([part.labels for part in parts]),
    )


def evaluate_batch(
    model: nn.Module, batch: Batch, batch_size: int = 1024
) -> tuple[float, float]:
    """Return the mean cross-entropy and the accuracy of ``model`` on ``batch``."""
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(batch.labels), batch_size):
            waves = torch.from_numpy(batch.waveforms[start : start + batch_size])
            labels = torch.from_numpy(batch.labels[start : start + batch_size])
            logits = model(waves)
            total_loss += float(loss_fn(logits, labels))
            correct += int((logits.argmax(dim=1) == labels).sum())
    return total_loss / len(batch.labels), correct / len(batch.labels)


def draw_outlier_batch(count: int, rng: np.random.Generator) -> FloatArray:
    """Draw ``count`` outliers, an equal share from each outlier family, shuffled."""
    shares = np.array_split(np.arange(count), len(OUTLIER_KINDS))
    parts = [
        draw_outliers(kind, len(share), rng)
        for kind, share in zip(OUTLIER_KINDS, shares, strict=True)
    ]
    return np.concatenate(parts)[rng.permutation(count)]


def _train_epoch(
    model: WaveformClassifier,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: Batch,
    outliers: FloatArray,
    config: TrainConfig,
    description: str,
) -> tuple[float, float]:
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total_loss, correct = 0.0, 0
    waves_all = torch.from_numpy(data.waveforms)
    labels_all = torch.from_numpy(data.labels)
    outliers_all = torch.from_numpy(outliers)
    batch_size = config.batch_size
    outlier_batch_size = math.ceil(batch_size * config.outlier_fraction)
    steps = math.ceil(len(data.labels) / batch_size)

    progress = tqdm(range(steps), desc=description, leave=False, unit="batch")
    for step in progress:
        waves = waves_all[step * batch_size : (step + 1) * batch_size]
        labels = labels_all[step * batch_size : (step + 1) * batch_size]
        extra = outliers_all[
            step * outlier_batch_size : (step + 1) * outlier_batch_size
        ]
        all_logits, all_scores = model.logits_and_outlier_scores(
            torch.cat([waves, extra])
        )
        logits, outlier_logits = all_logits[: len(labels)], all_logits[len(labels) :]
        loss = loss_fn(logits, labels)
        if len(extra) > 0:
            # Outlier exposure: the class head is pulled towards the uniform
            # distribution on outliers, and the outlier head learns to tell
            # outliers (target 1) from training waveforms (target 0).
            uniform_loss = -torch.log_softmax(outlier_logits, dim=1).mean()
            is_outlier = torch.cat([torch.zeros(len(labels)), torch.ones(len(extra))])
            outlier_loss = nn.functional.binary_cross_entropy_with_logits(
                all_scores, is_outlier
            )
            loss = loss + config.outlier_weight * (uniform_loss + outlier_loss)

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        scheduler.step()

        total_loss += loss.item() * len(labels)
        correct += int((logits.argmax(dim=1) == labels).sum())
        progress.set_postfix(loss=f"{loss.item():.4f}")
    return total_loss / len(data.labels), correct / len(data.labels)


def train(
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train from ``config.seed`` and return the model of the best validation epoch.

    Every epoch draws fresh augmented waveforms from the seeded training stream.
    Training stops early when the validation loss has not improved for
    ``config.patience`` epochs.
    """
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)

    model = WaveformClassifier(config.hidden_size, len(CLASS_NAMES))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(config.samples / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15,
    )
    train_rng = make_rng((config.seed, TRAIN_STREAM))
    validation = draw_validation_set(config.validation_samples, config.seed)

    history: list[EpochRecord] = []
    best_state = copy.deepcopy(model.state_dict())
    best_loss, best_epoch, best_accuracy = math.inf, 0, 0.0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        data = draw_training_batch(config.samples, train_rng)
        outlier_count = math.ceil(config.samples * config.outlier_fraction)
        outliers = draw_outlier_batch(outlier_count, train_rng)
        description = f"epoch {epoch}/{config.epochs}"
        train_loss, train_accuracy = _train_epoch(
            model, optimizer, scheduler, data, outliers, config, description
        )
        validation_loss, validation_accuracy = evaluate_batch(model, validation)

        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            validation_loss=validation_loss,
            validation_accuracy=validation_accuracy,
            learning_rate=float(scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - epoch_started,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)

        if validation_loss < best_loss:
            best_loss, best_epoch = validation_loss, epoch
            best_accuracy = validation_accuracy
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            logger.info(
                "stopping early epoch=%d best_epoch=%d patience=%d",
                epoch,
                best_epoch,
                config.patience,
            )
            break

    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_validation_accuracy=best_accuracy,
        seconds=time.perf_counter() - started,
    )
