"""Parse and validate /classify bodies without building a Python object per sample.

FastAPI's pydantic path would build and check one float object per sample; this
parses the body once with orjson, checks each row's element types in C with
``map(type, row)``, and converts all rows to one NumPy array. Errors keep
FastAPI's ``{"detail": [{"type", "loc", "msg", "input"}]}`` shape and name the
waveform and sample index.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

FLOAT32_MAX = float(np.finfo(np.float32).max)
NUMBER_TYPES = frozenset({int, float})
# Lists longer than this are reported once, not sample by sample.
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class ClassifyInput:
    """Validated waveforms (N, T) as float32, and whether the body held just one."""

    waveforms: np.ndarray
    single: bool


class BodyValidationError(ValueError):
    """The body is not a valid /classify request; ``errors`` follow FastAPI's format."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid body")
        self.errors = errors


def _error(
    kind: str, loc: tuple[Any, ...], msg: str, value: Any = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "loc": ["body", *loc], "msg": msg}
    if value is not None and not isinstance(value, list | dict):
        entry["input"] = _json_safe(value)
    return entry


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or Infinity, and orjson writes integers of 64 bits at most.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if type(value) is int and not -(2**63) <= value < 2**64:
        return _short(value)
    return value


def decode_json(body: bytes) -> Any:
    """Decode ``body``; NaN and Infinity literals are accepted so they can be named."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        try:
            # The standard library accepts NaN, Infinity and numbers beyond
            # float64 range, which orjson rejects without saying where.
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BodyValidationError(
                [
                    _error(
                        "json_invalid",
                        (fast_error.pos,),
                        f"JSON decode error: {fast_error.msg}",
                    )
                ]
            ) from fast_error


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _sample_problem(value: Any) -> tuple[str, str] | None:
    if type(value) not in NUMBER_TYPES:
        return "float_type", f"expected a number, got {_describe(value)}"
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if type(value) is float and not math.isfinite(number):
        return "finite_number", f"expected a finite number, got {value}"
    if abs(number) > FLOAT32_MAX:
        return (
            "float32_range",
            f"{value} is beyond the float32 range of +/-{FLOAT32_MAX:.6g}",
        )
    return None


def _sample_errors(
    row: list[Any], label: str, loc: tuple[Any, ...]
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for index, value in enumerate(row):
        problem = _sample_problem(value)
        if problem is None:
            continue
        kind, message = problem
        errors.append(
            _error(kind, (*loc, index), f"{label}, sample {index}: {message}", value)
        )
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    return errors


def _row_errors(
    row: Any, length: int, label: str, loc: tuple[Any, ...]
) -> list[dict[str, Any]]:
    if not isinstance(row, list):
        return [
            _error(
                "list_type",
                loc,
                f"{label}: expected a list of {length} numbers, got {_describe(row)}",
                row,
            )
        ]
    if len(row) != length:
        message = f"{label}: expected exactly {length} samples, got {len(row)}"
        return [_error("length", loc, message)]
    return _sample_errors(row, label, loc)


def _rows_to_array(
    rows: list[Any], length: int, locs: list[tuple[Any, ...]], labels: list[str]
) -> np.ndarray:
    # Fast path: every row is a list of the right length holding only ints and
    # floats, and the values fit float32. Anything else is found by the slow
    # per-sample scan, which only runs for invalid requests.
    fast = all(
        isinstance(row, list)
        and len(row) == length
        and NUMBER_TYPES.issuperset(map(type, row))
        for row in rows
    )
    if fast:
        try:
            values = np.array(rows, dtype=np.float64)
        except OverflowError:
            values = None
        if values is not None:
            magnitude = np.abs(values)
            if np.all(magnitude <= FLOAT32_MAX):  # also false for NaN
                return values.astype(np.float32)

    errors: list[dict[str, Any]] = []
    for row, loc, label in zip(rows, locs, labels, strict=True):
        errors.extend(_row_errors(row, length, label, loc))
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    raise BodyValidationError(errors[:MAX_REPORTED_ERRORS])


def parse_classify_body(body: bytes, length: int, max_batch_size: int) -> ClassifyInput:
    """Return the validated waveforms of a /classify body.

    The body is a JSON object with exactly one of ``waveform`` (one list of
    ``length`` numbers) or ``waveforms`` (1 to ``max_batch_size`` such lists).

    Raises:
        BodyValidationError: the body is not such an object.
    """
    data = decode_json(body)
    if not isinstance(data, dict):
        raise BodyValidationError(
            [
                _error(
                    "model_type",
                    (),
                    "expected a JSON object with 'waveform' or 'waveforms'",
                )
            ]
        )

    keys = set(data)
    extra = sorted(keys - {"waveform", "waveforms"})
    if extra:
        raise BodyValidationError(
            [
                _error(
                    "extra_forbidden",
                    (name,),
                    f"unknown field {name!r}; send only 'waveform' or 'waveforms'",
                )
                for name in extra
            ]
        )
    if len(keys) != 1:
        message = (
            "send exactly one of 'waveform' (one waveform) or 'waveforms' (a batch)"
        )
        raise BodyValidationError(
            [_error("missing" if not keys else "exclusive", (), message)]
        )

    if "waveform" in data:
        row = data["waveform"]
        values = _rows_to_array([row], length, [("waveform",)], ["waveform 0"])
        return ClassifyInput(values, single=True)

    rows = data["waveforms"]
    if not isinstance(rows, list):
        raise BodyValidationError(
            [
                _error(
                    "list_type",
                    ("waveforms",),
                    f"waveforms: expected a list of waveforms, got {_describe(rows)}",
                    rows,
                )
            ]
        )
    if not 1 <= len(rows) <= max_batch_size:
        message = (
            f"waveforms: expected 1 to {max_batch_size} waveforms, got {len(rows)}"
        )
        raise BodyValidationError([_error("batch_size", ("waveforms",), message)])
    locs = [("waveforms", index) for index in range(len(rows))]
    labels = [f"waveform {index}" for index in range(len(rows))]
    return ClassifyInput(_rows_to_array(rows, length, locs, labels), single=False)
