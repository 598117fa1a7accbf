"""Parse and validate /classify bodies without building a Python object per sample.

FastAPI's pydantic path would build and check one float object per sample.
This module parses the body once with orjson and lets NumPy convert all rows to
one array, inferring the element type in C. Only when that conversion does not
yield a numeric array within float32 range does a per-sample scan run, to name
the invalid samples. Errors keep FastAPI's ``{"detail": [{"type", "loc", "msg",
"input"}]}`` shape and name the waveform and sample index.
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
# NumPy array kinds of a numeric array: float, signed and unsigned integer.
NUMERIC_KINDS = frozenset("fiu")
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
    entry: dict[str, Any] = {
        "type": kind,
        "loc": ["body", *(_json_safe(part) for part in loc)],
        "msg": msg,
    }
    if value is not None and not isinstance(value, list | dict):
        entry["input"] = _json_safe(value)
    return entry


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or Infinity, and orjson writes integers of 64 bits at most.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if type(value) is int and not -(2**63) <= value < 2**64:
        return _short(value)
    if isinstance(value, str):
        return utf8_safe(value)
    return value


def utf8_safe(text: str) -> str:
    """Return ``text`` with lone surrogates (from JSON escapes such as \\ud800)
    written as backslash escapes, so that it can be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def decode_json(body: bytes) -> Any:
    """Decode ``body``; NaN and Infinity literals are accepted so they can be named."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        try:
            # The standard library accepts NaN, Infinity and numbers beyond
            # float64 range, which orjson rejects without saying where.
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: nesting deeper than the interpreter's stack,
            # which orjson reports as its depth limit.
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


def _inferred_array(rows: list[Any], length: int) -> np.ndarray | None:
    # NumPy infers a float or integer dtype only when every element is an int,
    # a float or a bool; the caller has ruled out bools. Ragged rows raise, and
    # strings, nulls, objects and integers beyond 64 bits give other dtypes.
    try:
        values = np.array(rows)
    except (ValueError, OverflowError):
        return None
    if values.dtype.kind not in NUMERIC_KINDS or values.shape != (len(rows), length):
        return None
    if not np.abs(values).max() <= FLOAT32_MAX:  # NaN fails the comparison too
        return None
    return values.astype(np.float32)


def _checked_array(rows: list[Any], length: int) -> np.ndarray | None:
    # Every row is a list of the right length holding only ints and floats,
    # and the values fit float32; else None.
    valid_types = all(
        isinstance(row, list)
        and len(row) == length
        and NUMBER_TYPES.issuperset(map(type, row))
        for row in rows
    )
    if not valid_types:
        return None
    try:
        values = np.array(rows, dtype=np.float64)
    except OverflowError:
        return None
    if not np.abs(values).max() <= FLOAT32_MAX:  # NaN fails the comparison too
        return None
    return values.astype(np.float32)


def _rows_to_array(
    rows: list[Any], length: int, single: bool, has_booleans: bool
) -> np.ndarray:
    # NumPy's own type inference is the fast path, valid only without JSON
    # booleans, which it would read as 0 and 1. The exact path checks each
    # element's type. The per-sample scan only runs for invalid requests.
    values = None if has_booleans else _inferred_array(rows, length)
    if values is None:
        values = _checked_array(rows, length)
    if values is not None:
        return values

    if single:
        locs: list[tuple[Any, ...]] = [("waveform",)]
        labels = ["waveform 0"]
    else:
        locs = [("waveforms", index) for index in range(len(rows))]
        labels = [f"waveform {index}" for index in range(len(rows))]
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
    # "true" has a "t" and "false" an "l"; neither letter occurs in numbers or
    # in the keys "waveform(s)". A single-byte search runs at memchr speed,
    # where searching for b"true" took 60 us on a 90 kB body. Other words with
    # those letters ("null", strings) only send the body down the exact path.
    has_booleans = b"t" in body or b"l" in body
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
        values = _rows_to_array([row], length, True, has_booleans)
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
    values = _rows_to_array(rows, length, False, has_booleans)
    return ClassifyInput(values, single=False)
