"""The training command: options, reproducibility and the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent


def _tiny(seed: int) -> TrainConfig:
    return TrainConfig(
        samples=256,
        validation_samples=90,
        epochs=2,
        batch_size=64,
        hidden_size=4,
        seed=seed,
        threads=1,
    )


def test_same_seed_same_weights() -> None:
    first = train(_tiny(0)).model.state_dict()
    second = train(_tiny(0)).model.state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_different_seed_different_weights() -> None:
    first = train(_tiny(0)).model.state_dict()
    other = train(_tiny(1)).model.state_dict()
    assert not torch.equal(first["head.weight"], other["head.weight"])


def test_history_and_best_epoch() -> None:
    result = train(_tiny(3))
    assert [record.epoch for record in result.history] == [1, 2]
    assert result.best_epoch in (1, 2)
    best = result.history[result.best_epoch - 1]
    assert best.validation_loss == min(r.validation_loss for r in result.history)


def test_help_shows_defaults() -> None:
    output = subprocess.run(
        [sys.executable, "-m", "training", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "--samples",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--hidden-size",
        "--seed",
        "--output-dir",
    ):
        assert option in output
    assert "(default: 35)" in output


@pytest.mark.slow
def test_cli_writes_artifact_and_evidence(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "training",
        "--samples",
        "256",
        "--epochs",
        "1",
        "--hidden-size",
        "4",
        "--validation-samples",
        "90",
        "--output-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    for name in (
        "wavecls.pt",
        "wavecls.json",
        "evaluation.json",
        "MODEL_CARD.md",
        "training_curves.png",
        "confusion_matrices.png",
        "examples.png",
    ):
        assert (tmp_path / name).is_file(), name
    metadata = json.loads((tmp_path / "wavecls.json").read_text())
    assert metadata["training"]["epochs"] == 1
    assert metadata["evaluation"]["conditions"]
    assert "epoch=1" in result.stderr
    assert metadata["sha256"] in (tmp_path / "MODEL_CARD.md").read_text()
