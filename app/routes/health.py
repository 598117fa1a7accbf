"""Health probes and model metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.dependencies import get_engine
from app.inference import InferenceEngine
from app.schemas import ErrorDetail, Liveness, ModelInfo, Readiness

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """Return 200 while the process is running."""
    return Liveness(status="alive")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": ErrorDetail, "description": "Model not loaded yet."}},
)
async def ready(engine: Annotated[InferenceEngine, Depends(get_engine)]) -> Readiness:
    """Return 200 once the model has loaded and passed its self-check, else 503."""
    return Readiness(status="ready")


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={503: {"model": ErrorDetail, "description": "Model not loaded yet."}},
)
async def model_info(
    engine: Annotated[InferenceEngine, Depends(get_engine)],
) -> ModelInfo:
    """Return the artifact's metadata, its SHA-256 and the device in use."""
    model = engine.model
    return ModelInfo(
        version=model.version,
        sha256=model.sha256,
        path=str(model.path),
        device=str(model.device),
        class_names=list(model.class_names),
        input_length=model.input_length,
        ood_threshold=model.ood_threshold,
        metadata=model.metadata,
    )
