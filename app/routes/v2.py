"""Open Inference Protocol (KServe V2) REST routes under /v2.

Every error here is ``{"error": "..."}`` with the protocol's status codes: 400 for
an invalid request, 404 for an unknown model or version, 503 while the model is
not ready or the service is overloaded. The bodies are parsed by ``app.oip``,
never by FastAPI, so a 422 never comes from these routes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute

from app.errors import RETRY_AFTER_S
from app.inference import InferenceEngine, InferenceTimeoutError, OverloadedError
from app.oip import (
    BINARY_HEADER,
    MODEL_NAME,
    InferenceRequestError,
    build_infer_response,
    model_metadata,
    parse_infer_request,
    server_metadata,
)

logger = logging.getLogger(__name__)

_EXAMPLE_WAVEFORM = [1.0 if (i // 10) % 2 == 0 else -1.0 for i in range(100)]
_EXAMPLE_REQUEST = {
    "id": "42",
    "inputs": [
        {
            "name": "waveform",
            "shape": [1, 100],
            "datatype": "FP32",
            "data": _EXAMPLE_WAVEFORM,
        }
    ],
    "outputs": [{"name": "probabilities"}, {"name": "label"}],
}
_EXAMPLE_RESPONSE = {
    "model_name": "wavecls",
    "model_version": "1acb40715062",
    "id": "42",
    "outputs": [
        {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [1, 3],
            "data": [0.002, 0.9966, 0.0014],
        },
        {
            "name": "label",
            "datatype": "BYTES",
            "shape": [1],
            "data": ["square"],
        },
    ],
}
_EXAMPLE_METADATA = {
    "name": "wavecls",
    "versions": ["1acb40715062"],
    "platform": "pytorch_torchscript",
    "inputs": [{"name": "waveform", "datatype": "FP32", "shape": [-1, 100]}],
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "ood_score", "datatype": "FP32", "shape": [-1]},
        {"name": "out_of_distribution", "datatype": "BOOL", "shape": [-1]},
    ],
    "parameters": {
        "class_names": "sine,square,sawtooth",
        "input_length": 100,
        "ood_threshold": -1.73,
        "sha256": "1acb4071...",
    },
}

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _json_example(description: str, example: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"example": example}},
    }


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }


_NOT_FOUND = _error_response("Unknown model name or version.")
_NOT_READY = _error_response("The model is loading, or the service is overloaded.")
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json_example("The requested outputs.", _EXAMPLE_RESPONSE),
    400: _error_response("Invalid request; the message names the value to fix."),
    404: _NOT_FOUND,
    503: _NOT_READY,
}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": _EXAMPLE_REQUEST,
            }
        },
    }
}


def _json(
    payload: Any,
    status_code: int = 200,
    retry: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    headers = dict(headers or {})
    if retry:
        headers["Retry-After"] = RETRY_AFTER_S
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _error(
    status_code: int,
    message: str,
    retry: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    return _json({"error": message}, status_code, retry, headers)


class ProtocolRoute(APIRoute):
    """A route that reads its own path parameters and sends errors in V2's shape.

    The handlers take only the request, so FastAPI validates nothing and never
    documents or sends a 422; path parameters are documented here instead. An
    ``HTTPException`` from a dependency, such as the API token's 401, is sent
    as ``{"error": ...}``.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        names = re.findall(r"{(\w+)}", path)
        extra = dict(self.openapi_extra or {})
        extra["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": _PATH_PARAMETERS[name],
            }
            for name in names
        ]
        self.openapi_extra = extra

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so FastAPI's ``{"detail": ...}`` errors become V2's."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                headers = dict(exc.headers or {})
                return _error(exc.status_code, str(exc.detail), headers=headers)

        return handle


_PATH_PARAMETERS = {
    "model_name": "The model name; this server serves `wavecls`.",
    "model_version": "The model version: the first 12 hex digits of its SHA-256.",
}

# Health and metadata stay open; the inference routes are included separately
# so that the application can require the API token on them.
router = APIRouter(prefix="/v2", tags=["v2"], route_class=ProtocolRoute)
infer_router = APIRouter(prefix="/v2", tags=["v2"], route_class=ProtocolRoute)


def _engine(request: Request) -> InferenceEngine | None:
    engine: InferenceEngine | None = getattr(request.app.state, "engine", None)
    return engine


def _not_ready() -> Response:
    return _error(
        503, f"model {MODEL_NAME!r} is not ready: it is still loading", retry=True
    )


def _resolve(request: Request) -> InferenceEngine | Response:
    """Return the engine serving the model in the path, or the error to send."""
    model_name = request.path_params["model_name"]
    model_version = request.path_params.get("model_version")
    if model_name != MODEL_NAME:
        return _error(
            404, f"model {model_name!r} not found; this server serves {MODEL_NAME!r}"
        )
    engine = _engine(request)
    if engine is None:
        return _not_ready()
    if model_version is not None and model_version != engine.model.version:
        return _error(
            404,
            f"version {model_version!r} of model {MODEL_NAME!r} not found; "
            f"the loaded version is {engine.model.version!r}",
        )
    return engine


@router.get(
    "",
    responses={
        200: _json_example(
            "Server name, version and extensions.",
            {"name": "wavecls", "version": "1.0.0", "extensions": ["classification"]},
        )
    },
)
async def server_metadata_route(request: Request) -> Response:
    """Return the server's name, version and supported protocol extensions.

    `classification` is Triton's classification extension: request an output
    with `"parameters": {"classification": k}` to get the top k classes.
    """
    return _json(server_metadata(request.app.version))


@router.get(
    "/health/live",
    responses={200: _json_example("The process is running.", {"live": True})},
)
async def server_live() -> Response:
    """Return 200 with `{"live": true}` while the process is running."""
    return _json({"live": True})


@router.get(
    "/health/ready",
    responses={
        200: _json_example("The model is ready.", {"ready": True}),
        503: _NOT_READY,
    },
)
async def server_ready(request: Request) -> Response:
    """Return 200 with `{"ready": true}` once the model is loaded, else 503."""
    if _engine(request) is None:
        return _not_ready()
    return _json({"ready": True})


_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json_example("The model is ready.", {"name": "wavecls", "ready": True}),
    404: _NOT_FOUND,
    503: _NOT_READY,
}


@router.get("/models/{model_name}/ready", responses=_READY_RESPONSES)
async def model_ready(request: Request) -> Response:
    """Return 200 with `{"name": "wavecls", "ready": true}` once loaded, else 503."""
    resolved = _resolve(request)
    if isinstance(resolved, Response):
        return resolved
    return _json({"name": MODEL_NAME, "ready": True})


@router.get(
    "/models/{model_name}/versions/{model_version}/ready", responses=_READY_RESPONSES
)
async def model_version_ready(request: Request) -> Response:
    """Return 200 when this version of `wavecls` is loaded and ready."""
    return await model_ready(request)


_METADATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json_example("Tensors, versions and class names.", _EXAMPLE_METADATA),
    404: _NOT_FOUND,
    503: _NOT_READY,
}


@router.get("/models/{model_name}", responses=_METADATA_RESPONSES)
async def model_metadata_route(request: Request) -> Response:
    """Return the model's input and output tensors, version and class names.

    The input `waveform` is FP32 of shape [-1, 100]. The outputs are
    `probabilities` (FP32 [-1, 3], in the order of the `class_names`
    parameter), `label` (BYTES [-1]), `ood_score` (FP32 [-1]) and
    `out_of_distribution` (BOOL [-1]).
    """
    resolved = _resolve(request)
    if isinstance(resolved, Response):
        return resolved
    return _json(model_metadata(resolved.model))


@router.get(
    "/models/{model_name}/versions/{model_version}", responses=_METADATA_RESPONSES
)
async def model_version_metadata(request: Request) -> Response:
    """Return the metadata of this version of the model."""
    return await model_metadata_route(request)


@infer_router.post(
    "/models/{model_name}/infer",
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def infer(request: Request) -> Response:
    """Classify the waveforms of the input tensor `waveform`.

    The input has shape [N, 100] or [100] (a batch of one) and datatype FP32
    or FP64. Its `data` is flat or nested in row-major order, and every value
    must be finite and within float32 range. Without `outputs`, all four
    outputs come back.
    An output requested with `"parameters": {"classification": k}` returns the
    top k classes as BYTES strings `"<probability>:<index>:<label>"`.

    Example body: `{"id": "42", "inputs": [{"name": "waveform", "shape": [1, 100],
    "datatype": "FP32", "data": [0.0, 0.31, ...]}], "outputs": [{"name":
    "label"}]}`. The response echoes `id` and contains one tensor per requested
    output, each with a batch dimension: `{"model_name": "wavecls",
    "model_version": "...", "id": "42", "outputs": [{"name": "label",
    "datatype": "BYTES", "shape": [1], "data": ["sine"]}]}`.
    """
    resolved = _resolve(request)
    if isinstance(resolved, Response):
        return resolved
    engine = resolved
    encoding = request.headers.get("content-encoding", "identity")
    if encoding != "identity":
        return _error(
            400,
            f"Content-Encoding {encoding!r} is not supported; send the body "
            "uncompressed",
        )

    body = await request.body()
    try:
        parsed = parse_infer_request(
            body,
            request.headers.get(BINARY_HEADER),
            engine.model.input_length,
            request.app.state.settings.max_batch_size,
        )
    except InferenceRequestError as exc:
        return _error(400, str(exc))

    try:
        predictions = await engine.classify(parsed.waveforms)
    except (OverloadedError, InferenceTimeoutError) as exc:
        logger.warning("rejected request path=%s reason=%s", request.url.path, exc)
        return _error(503, f"{exc}; retry later", retry=True)

    return _json(build_infer_response(parsed, predictions, engine.model))


@infer_router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def infer_version(request: Request) -> Response:
    """Classify with this version of the model; the body is as for /infer."""
    return await infer(request)
