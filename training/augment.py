"""The training distribution: clean waves with the distortions real signals carry."""

from __future__ import annotations

import numpy as np

from training.conditions import WIDE_CYCLES, add_noise, scale_and_shift
from training.data import Batch, generate

BAND_LIMITED_FRACTION = 0.3
NOISY_FRACTION = 0.7
NOISE_SNR_DB = (0.0, 30.0)


def draw_training_batch(count: int, rng: np.random.Generator) -> Batch:
    """Draw ``count`` labelled waveforms with random distortions.

    Cycles span 3 to 15, a share of the waves are band-limited, every wave gets a
    random amplitude and DC offset, and most get Gaussian noise at 0 to 30 dB SNR.
    """
    band_limited = int(round(count * BAND_LIMITED_FRACTION))
    sharp = generate(count - band_limited, rng, cycles=WIDE_CYCLES)
    smooth = generate(band_limited, rng, cycles=WIDE_CYCLES, band_limited=True)
    waves = np.concatenate([sharp.waveforms, smooth.waveforms])
    labels = np.concatenate([sharp.labels, smooth.labels])

    snr_db = rng.uniform(*NOISE_SNR_DB, size=count)
    noisy = rng.random(count) < NOISY_FRACTION
    waves = np.where(noisy[:, None], add_noise(waves, snr_db, rng), waves)
    waves = scale_and_shift(waves.astype(np.float32), rng)

    order = rng.permutation(count)
    return Batch(waves[order], labels[order])
