"""POST /classify: one waveform or a batch."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from app.config import Settings
from app.dependencies import get_engine, get_settings_from_app
from app.inference import InferenceEngine, Predictions
from app.schemas import ClassifyBatchResponse, ClassifyOneResponse, ErrorDetail
from app.validation import parse_classify_body

router = APIRouter(tags=["classify"])

REQUEST_BODY_SCHEMA = {
    "oneOf": [
        {"$ref": "#/components/schemas/ClassifyOne"},
        {"$ref": "#/components/schemas/ClassifyBatch"},
    ]
}


def render_predictions(
    predictions: Predictions, class_names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Return one JSON-ready prediction per waveform, in input order."""
    labels = predictions.labels.tolist()
    probabilities = predictions.probabilities.tolist()
    scores = predictions.ood_scores.tolist()
    flags = predictions.out_of_distribution.tolist()
    return [
        {
            "label": class_names[label],
            "probabilities": dict(zip(class_names, row, strict=True)),
            "ood_score": score,
            "out_of_distribution": flag,
        }
        for label, row, score, flag in zip(
            labels, probabilities, scores, flags, strict=True
        )
    ]


@router.post(
    "/classify",
    response_model=ClassifyOneResponse | ClassifyBatchResponse,
    responses={
        422: {"description": "The body names the waveform, sample and problem."},
        503: {"model": ErrorDetail, "description": "Loading, overloaded or timed out."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": REQUEST_BODY_SCHEMA}},
        }
    },
)
async def classify(
    request: Request,
    engine: Annotated[InferenceEngine, Depends(get_engine)],
    settings: Annotated[Settings, Depends(get_settings_from_app)],
) -> Response:
    """Classify `{"waveform": [...]}` or `{"waveforms": [[...], ...]}`.

    Each prediction carries the class probabilities, the most probable label, and
    an out-of-distribution score and flag. A flagged input is unlike anything the
    model was trained on, so its label is a guess.
    """
    body = await request.body()
    parsed = parse_classify_body(
        body, engine.model.input_length, settings.max_batch_size
    )

    predictions = await engine.classify(parsed.waveforms)

    items = render_predictions(predictions, engine.model.class_names)
    version = engine.model.version
    payload: dict[str, Any] = (
        {**items[0], "model_version": version}
        if parsed.single
        else {"predictions": items, "model_version": version}
    )
    return Response(orjson.dumps(payload), media_type="application/json")
