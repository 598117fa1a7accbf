"""The committed artifact against its accuracy and out-of-distribution targets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.artifact import LoadedModel, load_model
from app.config import DEFAULT_MODEL_PATH
from training.conditions import CONDITIONS
from training.data import generate
from training.evaluate import IN_DISTRIBUTION_FLAG_LIMIT, evaluate, scripted_classifier

# A seed that neither training (streams (0, 1..4)) nor the default evaluation
# (seed 2026) uses, so these are fresh waveforms.
TEST_SEED = 424242


@pytest.fixture(scope="module")
def committed() -> LoadedModel:
    return load_model(DEFAULT_MODEL_PATH, "cpu")


@pytest.fixture(scope="module")
def report(committed: LoadedModel) -> dict[str, object]:
    classify = scripted_classifier(committed.module, committed.device)
    return evaluate(
        classify, committed.ood_threshold, samples=3000, outliers=1000, seed=TEST_SEED
    )


def test_committed_artifact_accuracy_600(committed: LoadedModel) -> None:
    batch = generate(600, seed=TEST_SEED)
    probabilities, _ = scripted_classifier(committed.module, committed.device)(
        batch.waveforms
    )
    accuracy = (probabilities.argmax(axis=1) == batch.labels).mean()
    assert accuracy >= 0.99


@pytest.mark.parametrize("condition", [c.name for c in CONDITIONS])
def test_condition_meets_accuracy_target(
    report: dict[str, list[dict[str, object]]], condition: str
) -> None:
    row = next(r for r in report["conditions"] if r["name"] == condition)
    assert row["samples"] >= 3000
    assert row["accuracy"] >= row["target"], row


@pytest.mark.parametrize("condition", [c.name for c in CONDITIONS])
def test_condition_rarely_flagged(
    report: dict[str, list[dict[str, object]]], condition: str
) -> None:
    row = next(r for r in report["conditions"] if r["name"] == condition)
    assert row["flagged"] <= IN_DISTRIBUTION_FLAG_LIMIT, row


@pytest.mark.parametrize(
    "kind", ["gaussian_noise", "uniform_noise", "random_walk", "constant", "chirp"]
)
def test_outlier_kind_flagged(
    report: dict[str, list[dict[str, object]]], kind: str
) -> None:
    row = next(r for r in report["outliers"] if r["name"] == kind)
    assert row["samples"] >= 1000
    assert row["flagged"] >= 0.95, row


def test_metadata_matches_artifact(committed: LoadedModel) -> None:
    evaluation = committed.metadata["evaluation"]
    assert evaluation["all_targets_met"] is True
    assert committed.metadata["sha256"] == committed.sha256


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    scale=st.floats(min_value=0.05, max_value=20.0),
    offset=st.floats(min_value=-5.0, max_value=5.0),
)
def test_label_invariant_to_scale_and_offset(
    committed: LoadedModel, seed: int, scale: float, offset: float
) -> None:
    batch = generate(3, seed=seed, cycles=(3, 15))
    classify = scripted_classifier(committed.module, committed.device)
    original, _ = classify(batch.waveforms)
    transformed, _ = classify(
        (batch.waveforms * np.float32(scale) + np.float32(offset)).astype(np.float32)
    )
    assert np.array_equal(original.argmax(axis=1), transformed.argmax(axis=1))
