"""The waveform generator."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import CLASS_NAMES, INPUT_LENGTH, class_index, generate, render


def test_generate_same_seed_same_bits() -> None:
    first = generate(50, seed=123)
    second = generate(50, seed=123)
    assert first.waveforms.tobytes() == second.waveforms.tobytes()
    assert np.array_equal(first.labels, second.labels)


def test_generate_seed_zero_is_ordinary() -> None:
    zero = generate(20, seed=0)
    assert np.array_equal(zero.waveforms, generate(20, seed=0).waveforms)
    assert not np.array_equal(zero.waveforms, generate(20, seed=1).waveforms)


def test_generate_shapes_and_types() -> None:
    batch = generate(30, seed=5)
    assert batch.waveforms.shape == (30, INPUT_LENGTH)
    assert batch.waveforms.dtype == np.float32
    assert batch.labels.dtype == np.int64
    assert set(batch.labels.tolist()) <= set(range(len(CLASS_NAMES)))


def test_generate_restricted_kinds() -> None:
    batch = generate(40, seed=2, kinds=[class_index("square")])
    assert set(batch.labels.tolist()) == {class_index("square")}


def test_square_is_sign_of_sine() -> None:
    batch = generate(10, seed=3, kinds=[class_index("square")])
    assert set(np.unique(batch.waveforms).tolist()) == {-1.0, 1.0}


def test_sawtooth_rises_within_unit_range() -> None:
    labels = np.array([class_index("sawtooth")])
    wave = render(labels, np.array([5.0]), np.array([0.0]))[0]
    assert wave.min() >= -1.0
    assert wave.max() < 1.0
    steps = np.diff(wave)
    # Within a cycle it rises by 2 * cycles / samples per step; it drops at the wraps.
    assert np.sum(steps > 0) == len(steps) - 4


def test_sine_cycle_count() -> None:
    labels = np.array([class_index("sine")])
    wave = render(labels, np.array([7.0]), np.array([3.0]))[0]
    crossings = np.sum((wave[:-1] < 0) & (wave[1:] >= 0))
    assert crossings == 7


def test_band_limited_close_to_ideal() -> None:
    labels = np.array([0, 1, 2])
    cycles = np.array([2.0, 2.0, 2.0])
    phases = np.array([0.4, 0.4, 0.4])
    ideal = render(labels, cycles, phases)
    smooth = render(labels, cycles, phases, band_limited=True)
    assert np.allclose(ideal[0], smooth[0])
    # Gibbs ringing stays near the edges, so the mean error is small.
    assert np.abs(ideal[1] - smooth[1]).mean() < 0.1
    assert np.abs(ideal[2] - smooth[2]).mean() < 0.1


def test_cycle_range_is_inclusive() -> None:
    labels = np.array([class_index("sine")] * 1)
    for cycles in (5, 10):
        wave = render(labels, np.array([float(cycles)]), np.array([3.0]))[0]
        assert np.sum((wave[:-1] < 0) & (wave[1:] >= 0)) == cycles


def test_class_index_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="triangle"):
        class_index("triangle")
