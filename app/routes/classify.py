"""POST /classify: one waveform or a batch.

The route is declared with FastAPI for its OpenAPI description and for the
bearer-token dependency. When no dependency has to run, ``serve_classify``
serves it before FastAPI's middleware, exit stacks and router see the request
(``app.main.WaveclsAPI``): on a 2-core AMD EPYC VM those cost more of the event
loop's time per request than parsing, batching and serialising together
(measured with ``python -m bench.inprocess``). Both paths share
``classify_body`` and ``app.errors.error_response``, so they answer alike.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.dependencies import get_engine, get_settings_from_app
from app.errors import DOMAIN_ERRORS, ModelNotReadyError, error_response
from app.inference import InferenceEngine, Predictions
from app.middleware import json_messages
from app.schemas import ClassifyBatchResponse, ClassifyOneResponse, ErrorDetail
from app.validation import parse_classify_body

logger = logging.getLogger(__name__)

CLASSIFY_PATH = "/classify"

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

    await send_json_bytes(send, 200, content)


async def send_json_bytes(
    send: Send, status: int, content: bytes, headers: dict[str, str] | None = None
) -> None:
    """Send a complete response whose body is the JSON ``content``."""
    raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers or {}).items()
    ]
    for message in json_messages(status, content, raw_headers):
        await send(message)


async def send_json(
    send: Send, status: int, content: Any, headers: dict[str, str] | None = None
) -> None:
    """Send a complete response whose body is ``content`` encoded as JSON."""
    await send_json_bytes(send, status, orjson.dumps(content), headers)


def route_path(scope: Scope) -> str:
    """Return the request path without the ASGI ``root_path`` prefix."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(f"{root_path}/"):
        return path[len(root_path) :]
    return path


def is_classify_post(scope: Scope) -> bool:
    """Return whether ``scope`` is an HTTP POST to /classify."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and route_path(scope) == CLASSIFY_PATH
    )


async def serve_classify(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one POST /classify without FastAPI, mapping domain errors to responses.

    The only dependency that the application adds to the /classify route is
    the bearer-token check, which exists only when ``WAVECLS_API_TOKEN`` is
    set, so only without a token may a request take this path.
    """
    try:
        await classify_asgi(scope, receive, send)
    except DOMAIN_ERRORS as exc:
        response = error_response(exc, scope["path"])
        await send_json(send, response.status, response.content, response.headers)
    except ClientDisconnect:
        logger.info(
            "client disconnected before the whole body arrived path=%s request_id=%s",
            scope["path"],
            scope.get("state", {}).get("request_id"),
        )
        raise


router = APIRouter(tags=["classify"])


@router.post(
    CLASSIFY_PATH,
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
