"""Write MODEL_CARD.md from the artifact's metadata and evaluation report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training import plots
from training.augment import BAND_LIMITED_FRACTION, NOISE_SNR_DB, NOISY_FRACTION
from training.export import METADATA_NAME

CARD_NAME = "MODEL_CARD.md"


def _accuracy_table(report: dict[str, Any]) -> str:
    lines = [
        "| condition | samples | accuracy | target | flagged as out of distribution |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["conditions"]:
        lines.append(
            f"| {row['description']} | {row['samples']:,} | {row['accuracy']:.2%} | "
            f"{row['target']:.1%} | {row['flagged']:.2%} |"
        )
    return "\n".join(lines)


def _outlier_table(report: dict[str, Any]) -> str:
    lines = ["| input | samples | flagged | target |", "|---|---:|---:|---:|"]
    for row in report["outliers"]:
        lines.append(
            f"| {row['description']} | {row['samples']:,} | {row['flagged']:.2%} | "
            f"{row['target']:.0%} |"
        )
    for row in report["unseen_outliers"]:
        lines.append(
            f"| {row['description']}, never shown in training | {row['samples']:,} | "
            f"{row['flagged']:.2%} | none |"
        )
    return "\n".join(lines)


def render_model_card(metadata: dict[str, Any]) -> str:
    """Return the model card text for ``metadata`` (which must carry its evaluation)."""
    report = metadata["evaluation"]
    training = metadata["training"]
    return f"""# Model card: wavecls hand-written LSTM

Artifact `{metadata["file"]}`, SHA-256 `{metadata["sha256"]}`, version
`{metadata["version"]}`, exported with torch {metadata["torch_version"]} on
{metadata["created_at"]}. Every figure below was measured on this file by
`python -m training.evaluate` (seed {report["seed"]}).

## What it does

It classifies a waveform of {metadata["input_length"]} samples as one of
{", ".join(metadata["class_names"])}, and scores how unlike the training data
the input is. The TorchScript module's `forward` returns class probabilities
(B, 3); its `classify` method returns the probabilities and the
out-of-distribution scores (B,). Inputs of shape (B, 100) or (B, 100, 1).

## Model

- Per-waveform standardisation inside the module (subtract the mean, divide by
  the standard deviation), so amplitude and DC offset cannot change the label.
  A constant waveform has no variation to scale and becomes all zeros, not NaN.
- A hand-written LSTM cell (two `nn.Linear` layers, gates in the order input,
  forget, candidate, output, forget-gate bias initialised to 1), hidden size
  {metadata["hidden_size"]}, run over the 100 samples from a zero state.
- A linear head on the last hidden state gives the 3 class logits; a second
  linear head gives one outlier logit.
- For serving, the trained weights are copied into `torch.nn.LSTM`, whose fused
  kernel computes the same recurrence (tested to 1e-5) far faster than a
  scripted loop over the steps.

## Training data and recipe

Synthetic waveforms from `training/data.py`: sine, square (the sign of a sine)
and a rising sawtooth in [-1, 1], 100 samples over t in [0, 1), phase uniform
in [0, 2*pi). Each epoch draws {training["samples"]:,} fresh waveforms with
3 to 15 cycles. {BAND_LIMITED_FRACTION:.0%} of them are band-limited (Fourier
series below the Nyquist frequency). Every one is scaled by a log-uniform
amplitude from 0.05 to 20 and shifted by a DC offset from -5 to 5, and
{NOISY_FRACTION:.0%} get Gaussian noise at {NOISE_SNR_DB[0]:g} to
{NOISE_SNR_DB[1]:g} dB SNR. The optimiser is AdamW with a one-cycle schedule
(peak learning rate {training["learning_rate"]}), batch size
{training["batch_size"]}, at most {training["epochs"]} epochs with early
stopping (patience {training["patience"]}) on the loss of a fixed validation
set. The best epoch ({metadata["best_epoch"]}) is kept. Seed {metadata["seed"]};
training took {metadata["training_seconds"]} s on 2 CPU cores.

Reproduce this artifact with `python -m training` (all defaults).

![training curves]({plots.CURVES_FILE})

## Accuracy

{_accuracy_table(report)}

![confusion matrices]({plots.CONFUSION_FILE})

![examples]({plots.EXAMPLES_FILE})

## Inputs it was not made for

Method: outlier exposure (Dan Hendrycks, Mantas Mazeika and Thomas Dietterich,
"Deep Anomaly Detection with Outlier Exposure", ICLR 2019, arXiv:1812.04606).
During training every batch also carries
{training["outlier_fraction"]:.0%} as many outliers: white Gaussian and uniform
noise, random walks, constant levels and linear chirps, at random amplitude
and offset. On them the class head is trained towards the uniform
distribution, and a one-logit outlier head learns to tell them from waveforms.
That logit is the `ood_score`. The flag threshold
({metadata["ood_threshold"]:.4f}) is the largest
{metadata["ood_calibration_quantile"]:.1%} quantile of the score over 3,000
held-out waveforms of each condition above, drawn from a seed stream that
training never used.

{_outlier_table(report)}

The evaluation draws the outlier families from seeds never used in training,
but they are the same families that training showed the model, so these rates
measure how well known kinds of bad input are caught. The last rows are kinds it
never saw.

## Known limits

- Only 100-sample windows. Longer recordings must be cut into windows that
  hold 3 to 15 cycles each and resampled to 100 samples.
- Fewer than 3 or more than 15 cycles per window were never trained on;
  above about 25 cycles the waveform shapes alias at 100 samples.
- Below about 5 dB SNR accuracy drops, and heavily noisy waves start to be
  flagged as out of distribution.
- Shapes outside the three classes (triangle waves, pulse trains, mixtures)
  still get one of the three labels; the flag catches only some of them
  (see the table above), so an unflagged label is not proof of the class.
- The probabilities of flagged inputs are close to uniform by training, but
  are not calibrated confidences.
"""


def write_model_card(output_dir: Path) -> None:
    """Render the card from the metadata in ``output_dir`` and write it there."""
    metadata = json.loads((output_dir / METADATA_NAME).read_text())
    (output_dir / CARD_NAME).write_text(render_model_card(metadata))
