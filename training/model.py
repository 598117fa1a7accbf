"""The hand-written LSTM classifier, as it is trained."""

from __future__ import annotations

import torch
from torch import nn


def standardize(
    waveforms: torch.Tensor, min_std: float = 1e-6, relative_tolerance: float = 1e-5
) -> torch.Tensor:
    """Remove each waveform's mean and scale it to unit standard deviation.

    This makes the prediction independent of amplitude and DC offset. A waveform
    whose standard deviation is at most ``min_std + relative_tolerance * |mean|``
    counts as constant and becomes all zeros, not NaN. The relative part covers
    float32 rounding, which leaves a constant of 3.7 with a deviation of ~2e-7.

    Args:
        waveforms: (B, T) float tensor.
    """
    std, mean = torch.std_mean(waveforms, dim=1, keepdim=True, correction=0)  # (B, 1)
    is_varying = std > min_std + relative_tolerance * mean.abs()
    # One fused reduction and a multiply keep the exported graph short: each
    # TorchScript op costs a few microseconds at batch 1.
    scale = torch.where(is_varying, std.clamp(min=min_std).reciprocal(), 0.0)
    return (waveforms - mean) * scale


class LSTMCell(nn.Module):
    """One LSTM step built from two linear layers, gates ordered i, f, g, o."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input_to_gates = nn.Linear(input_size, 4 * hidden_size)
        self.hidden_to_gates = nn.Linear(hidden_size, 4 * hidden_size)
        with torch.no_grad():
            # The forget gate starts open (bias 1) so gradients reach early steps.
            self.input_to_gates.bias[hidden_size : 2 * hidden_size].fill_(1.0)
            self.hidden_to_gates.bias[hidden_size : 2 * hidden_size].fill_(0.0)

    def forward(
        self, gates_from_input: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one step from precomputed input gates (B, 4H) and state (h, c)."""
        hidden, cell = state
        gates = gates_from_input + self.hidden_to_gates(hidden)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        hidden = torch.sigmoid(o) * torch.tanh(cell)
        return hidden, cell


class WaveformClassifier(nn.Module):
    """Standardisation, the hand-written LSTM over the sequence, and linear heads.

    ``head`` maps the last hidden state to class logits. ``outlier_head`` maps it
    to one logit that is high for inputs unlike the training waveforms. That head
    is trained by outlier exposure and gives the out-of-distribution score.
    """

    def __init__(self, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = LSTMCell(1, hidden_size)
        self.head = nn.Linear(hidden_size, num_classes)
        self.outlier_head = nn.Linear(hidden_size, 1)

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the last hidden state (B, H) for waveforms (B, T) or (B, T, 1)."""
        if waveforms.dim() == 3:
            waveforms = waveforms.squeeze(2)
        x = standardize(waveforms).unsqueeze(2)  # (B, T, 1)
        batch_size, steps, _ = x.shape

        # The input projection does not depend on the state, so it runs once for
        # the whole sequence instead of once per step.
        gates_from_input = self.cell.input_to_gates(x)  # (B, T, 4H)
        hidden = x.new_zeros(batch_size, self.hidden_size)
        cell = x.new_zeros(batch_size, self.hidden_size)
        for step in range(steps):
            hidden, cell = self.cell(gates_from_input[:, step], (hidden, cell))
        return hidden

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return class logits (B, C)."""
        logits: torch.Tensor = self.head(self.features(waveforms))
        return logits

    def logits_and_outlier_scores(
        self, waveforms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return class logits (B, C) and outlier logits (B,)."""
        features = self.features(waveforms)
        return self.head(features), self.outlier_head(features).squeeze(1)
