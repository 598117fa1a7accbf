"""The /classify body parser: NumPy's fast path agrees with the exact check."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import validation
from app.validation import BodyValidationError, parse_classify_body

LENGTH = 100
MAX_BATCH = 8
FLOAT32_MAX = float(np.finfo(np.float32).max)

samples = st.one_of(
    st.floats(-FLOAT32_MAX, FLOAT32_MAX, allow_nan=False),
    st.integers(-(2**40), 2**40),
)
rows = st.lists(samples, min_size=LENGTH, max_size=LENGTH)


def _forbid_exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(rows: list[Any], length: int) -> None:
        raise AssertionError("a valid body took the exact path")

    monkeypatch.setattr(validation, "_checked_array", fail)


# Each example draws up to 400 samples; 25 examples keep this under a second.
@settings(max_examples=25, deadline=None)
@given(st.lists(rows, min_size=1, max_size=4))
def test_parse_fast_path_matches_exact(batch: list[list[float]]) -> None:
    body = orjson.dumps({"waveforms": batch})
    parsed = parse_classify_body(body, LENGTH, MAX_BATCH)
    exact = validation._checked_array(batch, LENGTH)
    assert exact is not None
    assert parsed.waveforms.dtype == np.float32
    assert np.array_equal(parsed.waveforms, exact)


@pytest.mark.parametrize(
    "waveform",
    [
        [0.25] * LENGTH,
        list(range(LENGTH)),
        [1, 2.5] * (LENGTH // 2),
        [-FLOAT32_MAX, FLOAT32_MAX] * (LENGTH // 2),
        [2**63] + [-1] * (LENGTH - 1),
    ],
    ids=["floats", "integers", "mixed", "float32 limits", "uint64"],
)
def test_parse_valid_body_takes_fast_path(
    monkeypatch: pytest.MonkeyPatch, waveform: list[float]
) -> None:
    _forbid_exact_path(monkeypatch)
    parsed = parse_classify_body(
        orjson.dumps({"waveform": waveform}), LENGTH, MAX_BATCH
    )
    assert parsed.single
    assert parsed.waveforms.shape == (1, LENGTH)
    assert np.array_equal(parsed.waveforms[0], np.array(waveform, dtype=np.float32))


def _body_with(sample: str, batch: bool = False) -> bytes:
    values = ["0.5"] * LENGTH
    values[7] = sample
    row = "[" + ",".join(values) + "]"
    if batch:
        return (
            '{"waveforms": [' + "[" + ",".join(["1"] * LENGTH) + "]," + row + "]}"
        ).encode()
    return ('{"waveform": ' + row + "}").encode()


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        ("true", "got a boolean"),
        ("false", "got a boolean"),
        ("null", "got null"),
        ('"1.5"', "got a string"),
        ("[1.0]", "got a list"),
        ("{}", "got an object"),
        ("1e39", "float32 range"),
        (str(10**40), "float32 range"),
        ("NaN", "expected a finite number"),
        ("-Infinity", "expected a finite number"),
    ],
)
def test_parse_rejects_what_numpy_would_accept(
    sample: str, problem: str, batch: bool
) -> None:
    # NumPy reads true/false as 1/0, "1.5" as a number when converting to
    # float, and 1e39 as inf in float32: each must still be named.
    with pytest.raises(BodyValidationError) as raised:
        parse_classify_body(_body_with(sample, batch), LENGTH, MAX_BATCH)
    error = raised.value.errors[0]
    row = ["waveforms", 1] if batch else ["waveform"]
    assert error["loc"] == ["body", *row, 7], error
    assert problem in error["msg"], error


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"waveforms": [[0.0] * LENGTH, [0.0] * 3]}, "waveform 1: expected exactly"),
        ({"waveforms": [[0.0] * LENGTH, "x"]}, "waveform 1: expected a list"),
        ({"waveforms": [[[0.0]] * LENGTH]}, "waveform 0, sample 0: expected a number"),
        ({"waveform": [0.0] * (LENGTH + 1)}, "waveform 0: expected exactly 100"),
    ],
    ids=["ragged", "not a list", "nested", "too long"],
)
def test_parse_rejects_bad_shapes(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BodyValidationError) as raised:
        parse_classify_body(json.dumps(body).encode(), LENGTH, MAX_BATCH)
    messages = " | ".join(error["msg"] for error in raised.value.errors)
    assert message in messages, messages


def test_parse_boolean_in_string_still_valid() -> None:
    # Letters of "true" inside a string only send the body down the exact
    # path, which rejects the unknown field on its own terms.
    body = orjson.dumps({"waveform": [0.5] * LENGTH, "note": "true"})
    with pytest.raises(BodyValidationError, match="unknown field 'note'"):
        parse_classify_body(body, LENGTH, MAX_BATCH)


def test_parse_integers_beyond_64_bits_take_exact_path() -> None:
    # NumPy makes an object array of them; the exact path converts them.
    waveform: list[int] = [1] * LENGTH
    waveform[3] = 2**70
    parsed = parse_classify_body(
        json.dumps({"waveform": waveform}).encode(), LENGTH, MAX_BATCH
    )
    assert parsed.waveforms[0, 3] == np.float32(2**70)


def test_deeply_nested_json_is_invalid() -> None:
    body = b'{"waveform":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(BodyValidationError) as caught:
        parse_classify_body(body, 100, 8)
    assert caught.value.errors[0]["type"] == "json_invalid", caught.value.errors
