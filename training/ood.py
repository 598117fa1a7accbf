"""Calibration of the out-of-distribution flag.

The score is the logit of the model's outlier head, trained by outlier exposure
(Hendrycks, Mazeika and Dietterich, "Deep Anomaly Detection with Outlier
Exposure", ICLR 2019). During training, batches of noise, random walks, constant
levels and chirps are shown to the model. Its class head is pulled towards the
uniform distribution on them, and a one-logit head learns to tell them from
waveforms. The threshold is set on held-out waveforms of every evaluation
condition, so that each condition alone has a low false-flag rate.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# Each in-distribution condition is flagged at most this often on the
# calibration data; the evaluation target is 0.5%.
CALIBRATION_QUANTILE = 0.998


def calibrate_threshold(
    scores_by_condition: Iterable[torch.Tensor],
    quantile: float = CALIBRATION_QUANTILE,
) -> float:
    """Return the largest per-condition ``quantile`` of the in-distribution scores."""
    return max(
        float(torch.quantile(scores.double(), quantile))
        for scores in scores_by_condition
    )
