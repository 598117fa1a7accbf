"""POST /classify: one waveform or a batch.

The route is declared with FastAPI for its OpenAPI description. When no
dependency has to run, a pure ASGI handler serves it, because FastAPI's
per-request machinery (dependency solving, two exit stacks, a Request object)
cost about 90 us of the event loop's time per request on a 2-core AMD EPYC VM.
That is more than parsing, batching and serialising together (measured with
``python -m bench.inprocess`` under py-spy). Both paths share ``classify_body``,
so they answer alike.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.dependencies import get_engine, get_settings_from_app
from app.errors import ModelNotReadyError
from app.inference import InferenceEngine, Predictions
from app.schemas import ClassifyBatchResponse, ClassifyOneResponse, ErrorDetail
from app.validation import parse_classify_body

JSON_CONTENT_TYPE = (b"content-type", b"application/json")

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


async def classify_body(
    engine: InferenceEngine, body: bytes, max_batch_size: int
) -> bytes:
    """Return the JSON response to a /classify request body.

    Raises:
        BodyValidationError, OverloadedError, InferenceTimeoutError: for the
            application's exception handlers, which map them to status codes.
    """
    model = engine.model
    parsed = parse_classify_body(body, model.input_length, max_batch_size)

    predictions = await engine.classify(parsed.waveforms)

    items = render_predictions(predictions, model.class_names)
    if parsed.single:
        items[0]["model_version"] = model.version
        return orjson.dumps(items[0])
    return orjson.dumps({"predictions": items, "model_version": model.version})


async def read_body(receive: Receive) -> bytes:
    """Return the whole request body from the ASGI ``receive`` channel.

    Raises:
        ClientDisconnect: the client went away before sending all of it.
    """
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def classify_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one POST /classify as a plain ASGI application."""
    app = scope["app"]
    engine: InferenceEngine | None = app.state.engine
    if engine is None:
        raise ModelNotReadyError("the artifact is still loading")
    body = await read_body(receive)

    content = await classify_body(engine, body, app.state.settings.max_batch_size)

    length = (b"content-length", str(len(content)).encode("ascii"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [JSON_CONTENT_TYPE, length],
        }
    )
    await send({"type": "http.response.body", "body": content})


class ClassifyRoute(APIRoute):
    """An APIRoute that serves POST requests with ``classify_asgi`` when it may.

    The only dependency that the application adds to this router is the
    bearer-token check, which exists only when ``WAVECLS_API_TOKEN`` is set.
    With a token, and for methods other than POST (which get FastAPI's 405),
    FastAPI's full path runs.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, on the pure ASGI path when no dependency applies."""
        settings = scope["app"].state.settings
        if scope["method"] == "POST" and settings.api_token is None:
            await classify_asgi(scope, receive, send)
        else:
            await super().handle(scope, receive, send)


router = APIRouter(tags=["classify"], route_class=ClassifyRoute)


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
async def classify(request: Request) -> Response:
    """Classify `{"waveform": [...]}` or `{"waveforms": [[...], ...]}`.

    Each prediction carries the class probabilities, the most probable label, and
    an out-of-distribution score and flag. A flagged input is unlike anything the
    model was trained on, so its label is a guess.
    """
    engine = get_engine(request)
    settings = get_settings_from_app(request)
    body = await request.body()
    content = await classify_body(engine, body, settings.max_batch_size)
    return Response(content, media_type="application/json")
