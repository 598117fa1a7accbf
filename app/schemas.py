"""Request and response models; they also make the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.validation import FLOAT32_MAX
from training.data import CLASS_NAMES, INPUT_LENGTH

_EXAMPLE_WAVEFORM: list[Any] = [
    round(((i * 7 % 100) / 50) - 1, 2) for i in range(INPUT_LENGTH)
]
_EXAMPLE_PROBABILITIES: dict[str, Any] = {
    "sine": 0.0005,
    "square": 0.0019,
    "sawtooth": 0.9976,
}

Sample = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
WaveformList = Annotated[
    list[Sample], Field(min_length=INPUT_LENGTH, max_length=INPUT_LENGTH)
]


class ClassifyOne(BaseModel):
    """One waveform of exactly the model's input length."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"waveform": _EXAMPLE_WAVEFORM}]},
    )

    waveform: WaveformList = Field(
        description=f"{INPUT_LENGTH} finite numbers within float32 range."
    )


class ClassifyBatch(BaseModel):
    """A batch of waveforms, classified in input order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"waveforms": [_EXAMPLE_WAVEFORM]}]},
    )

    waveforms: list[WaveformList] = Field(
        min_length=1,
        description="1 to WAVECLS_MAX_BATCH_SIZE waveforms, each of "
        f"{INPUT_LENGTH} finite numbers.",
    )


class Prediction(BaseModel):
    """The class probabilities of one waveform and whether it looks unfamiliar."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "label": "sawtooth",
                    "probabilities": _EXAMPLE_PROBABILITIES,
                    "ood_score": -5.16,
                    "out_of_distribution": False,
                }
            ]
        }
    )

    label: Literal[CLASS_NAMES] = Field(description="The most probable class.")  # type: ignore[valid-type]
    probabilities: dict[str, float] = Field(
        description="Probability of each class; they sum to 1."
    )
    ood_score: float = Field(
        description="Out-of-distribution score: the outlier head's logit. Higher "
        "means less like the training waveforms."
    )
    out_of_distribution: bool = Field(
        description="True when ood_score exceeds the calibrated threshold: the "
        "label is then not to be trusted."
    )


class ClassifyOneResponse(Prediction):
    """The prediction for a single waveform."""

    model_version: str


class ClassifyBatchResponse(BaseModel):
    """Predictions in the order of the request's waveforms."""

    predictions: list[Prediction]
    model_version: str


class Example(BaseModel):
    """One generated waveform with its class."""

    label: Literal[CLASS_NAMES]  # type: ignore[valid-type]
    waveform: WaveformList


class GenerateResponse(BaseModel):
    """Generated waveforms and the seed that reproduces them."""

    seed: int
    examples: list[Example]


class Liveness(BaseModel):
    """The process is running."""

    status: Literal["alive"]


class Readiness(BaseModel):
    """The model is loaded and passed its self-check."""

    status: Literal["ready"]


class ModelInfo(BaseModel):
    """The loaded artifact: its metadata, hash and device."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    sha256: str
    path: str
    device: str
    class_names: list[str]
    input_length: int
    ood_threshold: float
    metadata: dict[str, Any]


class ErrorDetail(BaseModel):
    """A client or server error in FastAPI's shape."""

    detail: str
