"""Open Inference Protocol (KServe V2): parse inference requests, build responses.

The REST protocol is specified in KServe's ``docs/predict-api/v2/required_api.md``.
Two Triton extensions are implemented as well:

- classification: an output requested with ``"parameters": {"classification": k}``
  comes back as BYTES strings ``"<value>:<index>:<label>"`` holding the top k
  classes, the value written like C++ ``std::to_string`` (six decimals).
- binary input tensors: an input with ``"parameters": {"binary_data_size": n}``
  carries its data as n raw little-endian bytes after the JSON header, whose
  length is in the ``Inference-Header-Content-Length`` request header. Outputs
  are always returned as JSON, which clients that ask for binary outputs accept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from app.artifact import LoadedModel
from app.inference import Predictions
from app.validation import (
    FLOAT32_MAX,
    NUMBER_TYPES,
    BodyValidationError,
    decode_json,
    utf8_safe,
)

MODEL_NAME = "wavecls"
PLATFORM = "pytorch_torchscript"
INPUT_NAME = "waveform"
BINARY_HEADER = "Inference-Header-Content-Length"
# Raw tensor bytes are little-endian, as in Triton's binary tensor extension.
INPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

PROBABILITIES = "probabilities"
LABEL = "label"
OOD_SCORE = "ood_score"
OUT_OF_DISTRIBUTION = "out_of_distribution"
OUTPUT_NAMES = (PROBABILITIES, LABEL, OOD_SCORE, OUT_OF_DISTRIBUTION)


class InferenceRequestError(ValueError):
    """An invalid request, rejected with 400; the message names the value to fix."""


@dataclass(frozen=True)
class RequestedOutput:
    """One output to return; ``classification`` > 0 requests the top classes instead."""

    name: str
    classification: int = 0


@dataclass(frozen=True)
class InferenceRequest:
    """A validated inference request."""

    id: str | None
    waveforms: np.ndarray  # (N, T) float32
    outputs: tuple[RequestedOutput, ...]


def server_metadata(version: str) -> dict[str, Any]:
    """Return the server metadata object."""
    return {"name": MODEL_NAME, "version": version, "extensions": ["classification"]}


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """Return the model metadata object: tensors, version and class names."""
    classes = len(model.class_names)
    return {
        "name": MODEL_NAME,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [
            {"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, model.input_length]}
        ],
        "outputs": [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, classes]},
            {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
            {"name": OOD_SCORE, "datatype": "FP32", "shape": [-1]},
            {"name": OUT_OF_DISTRIBUTION, "datatype": "BOOL", "shape": [-1]},
        ],
        # Parameter values are scalars in the protocol, so the names are joined.
        "parameters": {
            "class_names": ",".join(model.class_names),
            "input_length": model.input_length,
            "ood_threshold": model.ood_threshold,
            "sha256": model.sha256,
        },
    }


def parse_infer_request(
    body: bytes, header_length: str | None, input_length: int, max_batch_size: int
) -> InferenceRequest:
    """Validate an inference request body and return its waveforms as float32.

    Args:
        body: the HTTP body: JSON, followed by raw tensor bytes when
            ``header_length`` is given.
        header_length: the ``Inference-Header-Content-Length`` header, if sent.
        input_length: samples per waveform.
        max_batch_size: most waveforms accepted in one request.

    Raises:
        InferenceRequestError: the body is not a valid request for this model.
    """
    header, binary = _split_body(body, header_length)
    document = _decode(header)
    request_id = _request_id(document)
    tensor = _single_input(document)

    shape = _input_shape(tensor, input_length, max_batch_size)
    dtype = _input_dtype(tensor)
    values = _tensor_values(tensor, binary, dtype, shape)
    _check_range(values, shape)

    outputs = _requested_outputs(document)
    waveforms = values.reshape(shape).astype(np.float32)
    return InferenceRequest(request_id, waveforms, outputs)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise InferenceRequestError(
            f"{BINARY_HEADER} is {header_length!r}, but the body has {len(body)} "
            "bytes; send the byte length of the JSON part of the body"
        )
    return body[:length], body[length:]


def _decode(header: bytes) -> dict[str, Any]:
    try:
        document = decode_json(header)
    except BodyValidationError as exc:
        raise InferenceRequestError(
            f"the request body is not valid JSON: {exc}"
        ) from exc
    if not isinstance(document, dict):
        raise InferenceRequestError(
            f"expected a JSON object with 'inputs', got {_describe(document)}"
        )
    return document


def _request_id(document: dict[str, Any]) -> str | None:
    request_id = document.get("id")
    if request_id is None:
        return None
    if not isinstance(request_id, str):
        raise InferenceRequestError(
            f"'id' must be a string, got {_describe(request_id)}"
        )
    if utf8_safe(request_id) != request_id:
        # The id is sent back, and a lone surrogate cannot be encoded as UTF-8.
        raise InferenceRequestError(
            f"'id' must be valid Unicode text, got {request_id!r}"
        )
    return request_id


def _single_input(document: dict[str, Any]) -> dict[str, Any]:
    if "inputs" not in document:
        raise InferenceRequestError(
            f"missing 'inputs': send one input tensor named {INPUT_NAME!r}"
        )
    inputs = document["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise InferenceRequestError(
            f"'inputs' must be a list holding one tensor named {INPUT_NAME!r}, "
            f"got {_describe(inputs)}"
        )
    names = [item.get("name") if isinstance(item, dict) else None for item in inputs]
    unknown = [name for name in names if name != INPUT_NAME]
    if unknown:
        raise InferenceRequestError(
            f"unknown input {unknown[0]!r}; this model has one input, {INPUT_NAME!r}"
        )
    if len(inputs) > 1:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r} appears {len(inputs)} times; send it once"
        )
    tensor: dict[str, Any] = inputs[0]
    return tensor


def _input_shape(
    tensor: dict[str, Any], input_length: int, max_batch_size: int
) -> tuple[int, int]:
    shape = tensor.get("shape")
    expected = f"expected [N, {input_length}] or [{input_length}]"
    if not isinstance(shape, list) or not all(type(dim) is int for dim in shape):
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}: 'shape' must be a list of integers, {expected}, "
            f"got {_short(shape)}"
        )
    if shape == [input_length]:
        return 1, input_length
    if len(shape) != 2 or shape[1] != input_length:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r} has shape {shape}; {expected}"
        )
    if not 1 <= shape[0] <= max_batch_size:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r} has shape {shape}; send 1 to {max_batch_size} "
            "waveforms per request"
        )
    return shape[0], input_length


def _input_dtype(tensor: dict[str, Any]) -> np.dtype[Any]:
    datatype = tensor.get("datatype")
    if datatype not in INPUT_DTYPES:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r} has datatype {_short(datatype)}; send FP32 or FP64"
        )
    return INPUT_DTYPES[datatype]


def _tensor_values(
    tensor: dict[str, Any], binary: bytes, dtype: np.dtype[Any], shape: tuple[int, int]
) -> np.ndarray:
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}: 'parameters' must be an object, "
            f"got {_describe(parameters)}"
        )
    size = parameters.get("binary_data_size")
    if size is None:
        if binary:
            raise InferenceRequestError(
                f"the body has {len(binary)} bytes after the JSON header, but input "
                f"{INPUT_NAME!r} sets no 'binary_data_size' parameter"
            )
        return _json_values(tensor.get("data"), shape)
    if "data" in tensor:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r} has both 'data' and 'binary_data_size'; send one"
        )
    return _binary_values(size, binary, dtype, shape)


def _binary_values(
    size: Any, binary: bytes, dtype: np.dtype[Any], shape: tuple[int, int]
) -> np.ndarray:
    expected = shape[0] * shape[1] * dtype.itemsize
    if type(size) is not int or size != expected:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}: binary_data_size is {_short(size)}, but shape "
            f"{list(shape)} of {dtype.itemsize}-byte values needs {expected} bytes"
        )
    if len(binary) != expected:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}: binary_data_size is {expected}, but the body has "
            f"{len(binary)} bytes after the JSON header"
        )
    return np.frombuffer(binary, dtype=dtype).astype(np.float64)


def _json_values(data: Any, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(data, list):
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}: 'data' must be a list of numbers, "
            f"got {_describe(data)}"
        )
    flat = _flatten(data, shape)
    needed = shape[0] * shape[1]
    if len(flat) != needed:
        raise InferenceRequestError(
            f"input {INPUT_NAME!r} contains {len(flat)} values, but shape "
            f"{list(shape)} needs {needed}"
        )
    if not NUMBER_TYPES.issuperset(map(type, flat)):
        index = next(
            i for i, value in enumerate(flat) if type(value) not in NUMBER_TYPES
        )
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}, {_position(index, shape)}: expected a number, "
            f"got {_describe(flat[index])}"
        )
    try:
        return np.array(flat, dtype=np.float64)
    except OverflowError as exc:
        index = next(i for i, value in enumerate(flat) if not _fits_float64(value))
        raise InferenceRequestError(
            f"input {INPUT_NAME!r}, {_position(index, shape)}: {_short(flat[index])} "
            f"is beyond the float32 range of +/-{FLOAT32_MAX:.6g}"
        ) from exc


def _flatten(data: list[Any], shape: tuple[int, int]) -> list[Any]:
    # Row-major data may be flat or nested like the shape: [[...], [...]].
    if not any(isinstance(item, list) for item in data):
        return data
    for row_index, row in enumerate(data):
        if not isinstance(row, list) or any(isinstance(item, list) for item in row):
            raise InferenceRequestError(
                f"input {INPUT_NAME!r}: nested 'data' must be a list of {shape[0]} "
                f"lists of {shape[1]} numbers; item {row_index} is not"
            )
        if len(row) != shape[1]:
            raise InferenceRequestError(
                f"input {INPUT_NAME!r}: row {row_index} of 'data' has {len(row)} "
                f"values; shape {list(shape)} needs {shape[1]} per row"
            )
    return list(chain.from_iterable(data))


def _fits_float64(value: int | float) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _check_range(values: np.ndarray, shape: tuple[int, int]) -> None:
    valid = np.abs(values) <= FLOAT32_MAX  # also false for NaN
    if valid.all():
        return
    index = int(np.argmin(valid))
    value = float(values[index])
    problem = (
        f"expected a finite number, got {value}"
        if not math.isfinite(value)
        else f"{value:g} is beyond the float32 range of +/-{FLOAT32_MAX:.6g}"
    )
    raise InferenceRequestError(
        f"input {INPUT_NAME!r}, {_position(index, shape)}: {problem}"
    )


def _requested_outputs(document: dict[str, Any]) -> tuple[RequestedOutput, ...]:
    items = document.get("outputs")
    if not items:
        return tuple(RequestedOutput(name) for name in OUTPUT_NAMES)
    if not isinstance(items, list):
        raise InferenceRequestError(
            f"'outputs' must be a list of objects with a 'name', got {_describe(items)}"
        )
    outputs = tuple(_requested_output(item) for item in items)
    names = [output.name for output in outputs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InferenceRequestError(
            f"output {duplicates[0]!r} is requested more than once; request it once"
        )
    return outputs


def _requested_output(item: Any) -> RequestedOutput:
    name = item.get("name") if isinstance(item, dict) else None
    if name not in OUTPUT_NAMES:
        raise InferenceRequestError(
            f"unknown output {_short(name)}; this model has the outputs "
            f"{', '.join(OUTPUT_NAMES)}"
        )
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InferenceRequestError(
            f"output {name!r}: 'parameters' must be an object, "
            f"got {_describe(parameters)}"
        )
    # "binary_data" is accepted and ignored: outputs are always sent as JSON.
    count = parameters.get("classification", 0)
    if type(count) is not int or count < 0:
        raise InferenceRequestError(
            f"output {name!r}: 'classification' must be a positive integer, "
            f"got {_short(count)}"
        )
    if count and name != PROBABILITIES:
        raise InferenceRequestError(
            f"output {name!r} cannot be returned as a classification; request "
            f"the classification of output {PROBABILITIES!r} instead"
        )
    return RequestedOutput(name, count)


def build_infer_response(
    request: InferenceRequest, predictions: Predictions, model: LoadedModel
) -> dict[str, Any]:
    """Return the inference response object; tensors are NumPy arrays or lists.

    The caller serialises it with ``orjson.OPT_SERIALIZE_NUMPY``, which writes
    float32 values in their shortest form.
    """
    outputs = [
        _output_tensor(output, predictions, model.class_names)
        for output in request.outputs
    ]
    response: dict[str, Any] = {
        "model_name": MODEL_NAME,
        "model_version": model.version,
    }
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs
    return response


def _output_tensor(
    output: RequestedOutput, predictions: Predictions, class_names: Sequence[str]
) -> dict[str, Any]:
    count = len(predictions.probabilities)
    probabilities = predictions.probabilities.astype(np.float32)  # (N, C)
    if output.classification:
        data, top = _classifications(probabilities, output.classification, class_names)
        return _tensor(output.name, "BYTES", [count, top], data)
    if output.name == PROBABILITIES:
        return _tensor(
            output.name, "FP32", list(probabilities.shape), probabilities.ravel()
        )
    if output.name == LABEL:
        labels = [class_names[index] for index in predictions.labels.tolist()]
        return _tensor(output.name, "BYTES", [count], labels)
    if output.name == OOD_SCORE:
        scores = predictions.ood_scores.astype(np.float32)
        return _tensor(output.name, "FP32", [count], scores)
    flags = predictions.out_of_distribution.astype(np.bool_)
    return _tensor(output.name, "BOOL", [count], flags)


def _classifications(
    probabilities: np.ndarray, requested: int, class_names: Sequence[str]
) -> tuple[list[str], int]:
    # Like Triton, a count above the number of classes returns every class.
    top = min(requested, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]  # (N, top)
    data = [
        f"{float(row[index]):f}:{index}:{class_names[index]}"
        for row, indices in zip(probabilities, order.tolist(), strict=True)
        for index in indices
    ]
    return data, top


def _tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _position(index: int, shape: tuple[int, int]) -> str:
    row, column = divmod(index, shape[1])
    return f"waveform {row}, sample {column}"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return f"the number {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
