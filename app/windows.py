"""Cut a long recording into model-sized windows of a few cycles each.

The model was trained on windows of 100 samples holding 3 to 15 cycles
(``training.conditions.WIDE_CYCLES``). Squashing a long recording into 100
samples would put hundreds of cycles in one window. Instead, the fundamental
period is estimated, the recording is cut into consecutive windows of
``TARGET_CYCLES`` periods, near the middle of that range, and each window is
resampled to the model's input length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TARGET_CYCLES = 8
# The period is the first autocorrelation peak at least this high relative to
# the highest peak. Noise can make a peak at a multiple of the period slightly
# higher, and choosing it would halve the estimated frequency.
PEAK_SHARE = 0.9
# A highest peak below this normalised autocorrelation means no clear period.
MIN_PERIODICITY = 0.3


class WindowingError(ValueError):
    """A recording that cannot be cut into windows; the message gives the reason."""


@dataclass(frozen=True)
class Windowing:
    """The cut of a recording: period, window length, starts and resampled windows."""

    period: float | None  # estimated samples per cycle; None when used as is
    window_length: int  # samples of the recording in each window
    starts: list[int]  # first sample of each window
    windows: np.ndarray  # (W, input_length) float32
    leftover: int  # samples after the last whole window, not classified


def estimate_period(samples: np.ndarray) -> float:
    """Estimate the fundamental period of ``samples``, in samples, by autocorrelation.

    The mean is removed and the autocorrelation computed through a zero-padded
    FFT. Its local maxima are searched from its first negative value up to half
    the length. The period is the first maximum at least ``PEAK_SHARE`` as high
    as the highest one. A parabola through that maximum and its two neighbours
    refines it to a fraction of a sample.

    Raises:
        WindowingError: the recording is constant, contains fewer than two
            periods, or shows no clear period (noise).
    """
    centred = samples - samples.mean()
    count = len(centred)
    if count < 8 or not np.any(centred):
        raise WindowingError("the signal is constant, so it has no period")

    size = 1 << (2 * count - 1).bit_length()  # no circular wrap-around
    spectrum = np.fft.rfft(centred, size)
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum), size)[:count]
    autocorrelation /= autocorrelation[0]

    negative = np.flatnonzero(autocorrelation < 0)
    last_lag = count // 2  # at least two periods must fit
    if negative.size == 0 or negative[0] >= last_lag:
        raise WindowingError("the signal contains fewer than two periods")
    lags = np.arange(negative[0] + 1, last_lag)
    values = autocorrelation[lags]
    peaks = lags[
        (values >= autocorrelation[lags - 1]) & (values >= autocorrelation[lags + 1])
    ]
    if peaks.size == 0 or autocorrelation[peaks].max() < MIN_PERIODICITY:
        raise WindowingError("the signal shows no clear period")

    highest = autocorrelation[peaks].max()
    lag = int(peaks[np.argmax(autocorrelation[peaks] >= PEAK_SHARE * highest)])
    before, at, after = autocorrelation[lag - 1 : lag + 2]
    curvature = before - 2 * at + after
    offset = 0.5 * (before - after) / curvature if curvature < 0 else 0.0
    return float(lag + offset)


def resample(segment: np.ndarray, length: int) -> np.ndarray:
    """Resample ``segment`` to ``length`` samples by linear interpolation.

    Sample j of the result lies at position j * len(segment) / length, so the
    result covers the segment as the generator's t = j / length covers one
    window. There is no anti-aliasing filter: harmonics above the new Nyquist
    frequency fold back, as they do in the ideal, unfiltered training waves.
    """
    positions = np.arange(length) * (len(segment) / length)
    resampled: np.ndarray = np.interp(positions, np.arange(len(segment)), segment)
    return resampled


def cut_windows(
    samples: np.ndarray, input_length: int, target_cycles: float = TARGET_CYCLES
) -> Windowing:
    """Cut ``samples`` into windows of ``target_cycles`` periods, each resampled.

    A recording of exactly ``input_length`` samples is one window, as is. A
    recording holding fewer than ``target_cycles`` periods is one window of all
    its samples.

    Raises:
        WindowingError: the recording is shorter than ``input_length`` or its
            period cannot be estimated.
    """
    count = len(samples)
    if count == input_length:
        window = samples.astype(np.float32)[None, :]
        return Windowing(None, count, [0], window, 0)
    if count < input_length:
        raise WindowingError(
            f"{count} samples is fewer than the model's {input_length}; send at "
            f"least {input_length}"
        )

    period = estimate_period(samples)
    window_length = min(count, max(2, round(target_cycles * period)))
    starts = list(range(0, count - window_length + 1, window_length))
    windows = np.stack(
        [
            resample(samples[start : start + window_length], input_length)
            for start in starts
        ]
    ).astype(np.float32)
    leftover = count - starts[-1] - window_length
    return Windowing(period, window_length, starts, windows, leftover)
