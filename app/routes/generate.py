"""GET /generate: synthetic waveforms from the training generator."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError

from app.config import Settings
from app.dependencies import get_settings_from_app
from app.schemas import Example, GenerateResponse
from training.conditions import add_noise
from training.data import CLASS_NAMES, DEFAULT_CYCLES, class_index, generate, make_rng

router = APIRouter(tags=["generate"])

WaveType = Literal["sine", "square", "sawtooth", "random"]
MAX_SEED = 2**63 - 1


@router.get("/generate", response_model=GenerateResponse)
async def generate_examples(
    settings: Annotated[Settings, Depends(get_settings_from_app)],
    type: Annotated[
        WaveType, Query(description="Waveform type, or random.")
    ] = "random",  # noqa: A002
    count: Annotated[int, Query(ge=1, description="Number of examples.")] = 1,
    seed: Annotated[
        int | None, Query(ge=0, le=MAX_SEED, description="Seed; omitted draws one.")
    ] = None,
    cycles: Annotated[
        int | None,
        Query(ge=1, le=49, description="Cycles over the window; omitted draws 5-10."),
    ] = None,
    snr_db: Annotated[
        float | None,
        Query(ge=-20, le=100, description="Add Gaussian noise at this SNR in dB."),
    ] = None,
    amplitude: Annotated[float, Query(gt=0, le=1e6)] = 1.0,
    offset: Annotated[float, Query(ge=-1e6, le=1e6)] = 0.0,
    band_limited: Annotated[
        bool, Query(description="Keep only harmonics below the Nyquist frequency.")
    ] = False,
) -> GenerateResponse:
    """Generate labelled waveforms with the generator used in training.

    The same seed and options return the same waveforms. Each waveform posted to
    /classify comes back with its own label (for noise above about 5 dB SNR).
    """
    if count > settings.max_generate_count:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "count"),
                    "msg": f"count must be at most "
                    f"{settings.max_generate_count}, got {count}",
                    "input": count,
                }
            ]
        )
    seed = secrets.randbelow(MAX_SEED) if seed is None else seed
    rng = make_rng(seed)

    kinds = None if type == "random" else [class_index(type)]
    cycle_range = DEFAULT_CYCLES if cycles is None else (cycles, cycles)
    batch = generate(
        count, rng, kinds=kinds, cycles=cycle_range, band_limited=band_limited
    )
    waves = batch.waveforms
    if snr_db is not None:
        waves = add_noise(waves, snr_db, rng)
    waves = (waves * np.float32(amplitude) + np.float32(offset)).astype(np.float32)

    examples = [
        Example(label=CLASS_NAMES[label], waveform=row)
        for label, row in zip(batch.labels.tolist(), waves.tolist(), strict=True)
    ]
    return GenerateResponse(seed=seed, examples=examples)
