"""Synthetic waveforms: the generator shared by training, evaluation and the service.

Every function takes a ``numpy.random.Generator`` or a seed and draws from nothing
else, so the same seed gives the same arrays bit for bit on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CLASS_NAMES: tuple[str, ...] = ("sine", "square", "sawtooth")
INPUT_LENGTH = 100
DEFAULT_CYCLES = (5, 10)

# Samples over t in [0, 1) at a sample rate of INPUT_LENGTH per unit of time.
TIME = np.arange(INPUT_LENGTH, dtype=np.float64) / INPUT_LENGTH
NYQUIST = INPUT_LENGTH / 2

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Batch:
    """Generated waveforms with their class indices."""

    waveforms: FloatArray  # (N, INPUT_LENGTH)
    labels: IntArray  # (N,)


def make_rng(seed: int | Sequence[int]) -> np.random.Generator:
    """Return a generator for ``seed``; a tuple seed names an independent stream."""
    return np.random.default_rng(np.random.SeedSequence(seed))


def class_index(name: str) -> int:
    """Return the output index of the class called ``name``."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError as exc:
        raise ValueError(
            f"unknown waveform type {name!r}; expected one of {CLASS_NAMES}"
        ) from exc


def render(
    labels: IntArray,
    cycles: npt.NDArray[np.float64],
    phases: npt.NDArray[np.float64],
    band_limited: bool = False,
) -> npt.NDArray[np.float64]:
    """Draw ideal waveforms of amplitude 1 with the given shape parameters.

    Args:
        labels: (N,) class indices into ``CLASS_NAMES``.
        cycles: (N,) number of cycles over the window.
        phases: (N,) phase in radians.
        band_limited: rebuild each wave from its Fourier series, keeping only the
            harmonics below the Nyquist frequency, as a sound card outputs it.

    Returns:
        (N, INPUT_LENGTH) float64 waveforms.
    """
    angle = 2 * np.pi * cycles[:, None] * TIME[None, :] + phases[:, None]  # (N, T)
    if band_limited:
        return _render_band_limited(labels, cycles, angle)

    sine = np.sin(angle)
    square = np.where(sine >= 0, 1.0, -1.0)
    sawtooth = 2 * np.mod(angle / (2 * np.pi), 1.0) - 1
    return np.choose(labels[:, None], (sine, square, sawtooth))


def _render_band_limited(
    labels: IntArray,
    cycles: npt.NDArray[np.float64],
    angle: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    waves = np.zeros_like(angle)
    max_harmonic = int(NYQUIST // cycles.min()) + 1
    for harmonic in range(1, max_harmonic + 1):
        below_nyquist = (harmonic * cycles < NYQUIST)[:, None]
        term = np.sin(harmonic * angle) / harmonic
        is_fundamental = harmonic == 1
        # Square: (4/pi) * sum over odd n of sin(n*a)/n.
        # Rising sawtooth 2*frac(a/2pi) - 1: -(2/pi) * sum over n of sin(n*a)/n.
        square = (4 / np.pi) * term if harmonic % 2 == 1 else np.zeros_like(term)
        sawtooth = -(2 / np.pi) * term
        sine = term if is_fundamental else np.zeros_like(term)
        choice = np.choose(labels[:, None], (sine, square, sawtooth))
        waves += np.where(below_nyquist, choice, 0.0)
    return waves


def generate(
    count: int,
    seed: int | Sequence[int] | np.random.Generator,
    kinds: Sequence[int] | None = None,
    cycles: tuple[int, int] = DEFAULT_CYCLES,
    band_limited: bool = False,
) -> Batch:
    """Generate ``count`` clean waveforms of amplitude 1.

    Each waveform has an integer number of cycles drawn uniformly from the
    inclusive range ``cycles`` and a phase uniform in [0, 2*pi). ``kinds``
    restricts the classes drawn (uniformly among them); None draws all classes.
    """
    rng = seed if isinstance(seed, np.random.Generator) else make_rng(seed)
    choices = np.arange(len(CLASS_NAMES)) if kinds is None else np.asarray(kinds)

    labels = rng.choice(choices, size=count).astype(np.int64)
    cycle_counts = rng.integers(cycles[0], cycles[1], size=count, endpoint=True)
    phases = rng.uniform(0.0, 2 * np.pi, size=count)

    waves = render(labels, cycle_counts.astype(np.float64), phases, band_limited)
    return Batch(waves.astype(np.float32), labels)
