"""The hand-written LSTM cell and classifier."""

from __future__ import annotations

import torch
from torch import nn

from training.model import LSTMCell, WaveformClassifier, standardize


def test_cell_matches_torch_lstm() -> None:
    torch.manual_seed(0)
    hidden_size, steps, batch = 8, 30, 5
    cell = LSTMCell(1, hidden_size)
    reference = nn.LSTM(1, hidden_size, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(cell.input_to_gates.weight)
        reference.bias_ih_l0.copy_(cell.input_to_gates.bias)
        reference.weight_hh_l0.copy_(cell.hidden_to_gates.weight)
        reference.bias_hh_l0.copy_(cell.hidden_to_gates.bias)

    x = torch.randn(batch, steps, 1)
    hidden = torch.zeros(batch, hidden_size)
    state = (hidden, torch.zeros(batch, hidden_size))
    outputs = []
    with torch.no_grad():
        gates = cell.input_to_gates(x)
        for step in range(steps):
            state = cell(gates[:, step], state)
            outputs.append(state[0])
        expected, (expected_h, expected_c) = reference(x)

    assert torch.allclose(torch.stack(outputs, dim=1), expected, atol=1e-6)
    assert torch.allclose(state[0], expected_h[0], atol=1e-6)
    assert torch.allclose(state[1], expected_c[0], atol=1e-6)


def test_cell_forget_bias_starts_at_one() -> None:
    cell = LSTMCell(1, 4)
    total_bias = cell.input_to_gates.bias + cell.hidden_to_gates.bias
    assert torch.equal(total_bias[4:8], torch.ones(4))


def test_classifier_accepts_both_input_shapes() -> None:
    model = WaveformClassifier(hidden_size=4, num_classes=3).eval()
    x = torch.randn(3, 100)
    with torch.no_grad():
        flat = model(x)
        column = model(x.unsqueeze(2))
    assert flat.shape == (3, 3)
    assert torch.equal(flat, column)


def test_standardize_constant_gives_zeros() -> None:
    constant = torch.full((2, 100), 3.7)
    result = standardize(constant)
    assert torch.isfinite(result).all()
    assert torch.equal(result, torch.zeros_like(result))


def test_standardize_removes_scale_and_offset() -> None:
    x = torch.randn(4, 100, dtype=torch.float64)
    assert torch.allclose(standardize(x), standardize(x * 7.5 - 3.0), atol=1e-9)
