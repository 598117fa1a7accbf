"""Real-world distortions of the clean waveforms, and inputs the model was not made for.

The same functions augment the training data and build the evaluation sets, so a
condition means the same thing in both places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.data import INPUT_LENGTH, TIME, Batch, FloatArray, generate

AMPLITUDE_RANGE = (0.05, 20.0)
OFFSET_RANGE = (-5.0, 5.0)
WIDE_CYCLES = (3, 15)
BAND_LIMITED_GAIN = (0.6, 1.0)


def scale_and_shift(waves: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Multiply each wave by a log-uniform amplitude and add a uniform DC offset."""
    count = waves.shape[0]
    low, high = np.log(AMPLITUDE_RANGE[0]), np.log(AMPLITUDE_RANGE[1])
    amplitude = np.exp(rng.uniform(low, high, size=(count, 1)))
    offset = rng.uniform(*OFFSET_RANGE, size=(count, 1))
    return (waves * amplitude + offset).astype(np.float32)


def add_noise(
    waves: FloatArray, snr_db: float | np.ndarray, rng: np.random.Generator
) -> FloatArray:
    """Add white Gaussian noise at ``snr_db`` dB relative to each wave's AC power."""
    power = waves.astype(np.float64).var(axis=1, keepdims=True)
    snr = np.broadcast_to(np.asarray(snr_db, dtype=np.float64), (waves.shape[0],))
    noise_power = power / 10 ** (snr[:, None] / 10)
    noise = rng.standard_normal(waves.shape) * np.sqrt(noise_power)
    noisy: FloatArray = (waves + noise).astype(np.float32)
    return noisy


@dataclass(frozen=True)
class Condition:
    """A named way to draw labelled waveforms for evaluation."""

    name: str
    description: str
    target: float  # minimum accuracy, as a fraction
    draw: Callable[[int, np.random.Generator], Batch]


def _clean(count: int, rng: np.random.Generator) -> Batch:
    return generate(count, rng)


def _amplitude_offset(count: int, rng: np.random.Generator) -> Batch:
    batch = generate(count, rng)
    return Batch(scale_and_shift(batch.waveforms, rng), batch.labels)


def _noise(snr_db: float) -> Callable[[int, np.random.Generator], Batch]:
    def draw(count: int, rng: np.random.Generator) -> Batch:
        batch = generate(count, rng)
        return Batch(add_noise(batch.waveforms, snr_db, rng), batch.labels)

    return draw


def _wide_cycles(count: int, rng: np.random.Generator) -> Batch:
    return generate(count, rng, cycles=WIDE_CYCLES)


def _band_limited(count: int, rng: np.random.Generator) -> Batch:
    batch = generate(count, rng, band_limited=True)
    gain = rng.uniform(*BAND_LIMITED_GAIN, size=(count, 1))
    return Batch((batch.waveforms * gain).astype(np.float32), batch.labels)


def _combined(count: int, rng: np.random.Generator) -> Batch:
    batch = generate(count, rng, cycles=WIDE_CYCLES)
    waves = scale_and_shift(batch.waveforms, rng)
    waves = add_noise(waves, rng.uniform(10.0, 30.0, size=count), rng)
    return Batch(waves, batch.labels)


CONDITIONS: tuple[Condition, ...] = (
    Condition("clean", "training distribution: 5-10 cycles, amplitude 1", 1.0, _clean),
    Condition(
        "amplitude_offset",
        "amplitude x0.05-20 (log-uniform), DC offset -5 to 5",
        1.0,
        _amplitude_offset,
    ),
    Condition("noise_20db", "Gaussian noise at 20 dB SNR", 1.0, _noise(20.0)),
    Condition("noise_10db", "Gaussian noise at 10 dB SNR", 0.999, _noise(10.0)),
    Condition("noise_5db", "Gaussian noise at 5 dB SNR", 0.98, _noise(5.0)),
    Condition("cycles_3_15", "3 to 15 cycles", 1.0, _wide_cycles),
    Condition(
        "band_limited",
        "Fourier series below Nyquist, gain 0.6-1",
        1.0,
        _band_limited,
    ),
    Condition(
        "combined",
        "amplitude and offset, 10-30 dB noise, 3-15 cycles",
        0.999,
        _combined,
    ),
)


def _gaussian_noise(count: int, rng: np.random.Generator) -> FloatArray:
    return rng.standard_normal((count, INPUT_LENGTH)).astype(np.float32)


def _uniform_noise(count: int, rng: np.random.Generator) -> FloatArray:
    return rng.uniform(-1.0, 1.0, size=(count, INPUT_LENGTH)).astype(np.float32)


def _random_walk(count: int, rng: np.random.Generator) -> FloatArray:
    steps = rng.standard_normal((count, INPUT_LENGTH))
    return np.cumsum(steps, axis=1).astype(np.float32)


def _constant(count: int, rng: np.random.Generator) -> FloatArray:
    level = rng.uniform(-5.0, 5.0, size=(count, 1))
    return np.repeat(level, INPUT_LENGTH, axis=1).astype(np.float32)


def _chirp(count: int, rng: np.random.Generator) -> FloatArray:
    # A linear sweep between a low and a high frequency (in cycles per window),
    # rising or falling, so no window contains a steady number of cycles.
    low = rng.uniform(1.0, 4.0, size=(count, 1))
    high = rng.uniform(20.0, 40.0, size=(count, 1))
    rising = rng.random((count, 1)) < 0.5
    start, end = np.where(rising, low, high), np.where(rising, high, low)
    phase = rng.uniform(0.0, 2 * np.pi, size=(count, 1))
    angle = 2 * np.pi * (start * TIME + (end - start) * TIME**2 / 2) + phase
    return np.sin(angle).astype(np.float32)


@dataclass(frozen=True)
class OutlierKind:
    """A named family of inputs that belong to none of the three classes."""

    name: str
    description: str
    draw: Callable[[int, np.random.Generator], FloatArray]


OUTLIER_KINDS: tuple[OutlierKind, ...] = (
    OutlierKind("gaussian_noise", "white Gaussian noise", _gaussian_noise),
    OutlierKind("uniform_noise", "white uniform noise", _uniform_noise),
    OutlierKind("random_walk", "cumulative sum of Gaussian steps", _random_walk),
    OutlierKind("constant", "a constant level from -5 to 5", _constant),
    OutlierKind("chirp", "linear frequency sweep, 1-4 to 20-40 cycles", _chirp),
)


def draw_outliers(
    kind: OutlierKind, count: int, rng: np.random.Generator
) -> FloatArray:
    """Draw ``count`` outliers of ``kind`` at a random amplitude and offset."""
    waves = kind.draw(count, rng)
    if kind.name == "constant":
        return waves
    return scale_and_shift(waves, rng)


def _triangle(count: int, rng: np.random.Generator) -> FloatArray:
    cycles = rng.integers(3, 15, size=(count, 1), endpoint=True)
    phase = rng.uniform(0.0, 1.0, size=(count, 1))
    position = np.mod(cycles * TIME + phase, 1.0)
    return (4 * np.abs(position - 0.5) - 1).astype(np.float32)


def _pulse_train(count: int, rng: np.random.Generator) -> FloatArray:
    cycles = rng.integers(3, 15, size=(count, 1), endpoint=True)
    phase = rng.uniform(0.0, 1.0, size=(count, 1))
    duty = rng.uniform(0.05, 0.2, size=(count, 1))
    return np.where(np.mod(cycles * TIME + phase, 1.0) < duty, 1.0, 0.0).astype(
        np.float32
    )


# Families never shown during training; their flag rates are reported to show
# how far the outlier head generalises, without a target.
UNSEEN_KINDS: tuple[OutlierKind, ...] = (
    OutlierKind("triangle", "triangle wave, 3-15 cycles (a fourth shape)", _triangle),
    OutlierKind("pulse_train", "pulses of 5-20% duty cycle, 3-15 cycles", _pulse_train),
)
