"""A typed Python client of the wavecls service.

Usage::

    from app.client import WaveclsClient

    with WaveclsClient("http://127.0.0.1:8000") as client:
        example = client.generate(type="square", seed=1).examples[0]
        print(client.classify(example.waveform).label)

Connection errors and 503 responses are retried a bounded number of times with
exponential backoff; a 503's ``Retry-After`` sets the wait when it is longer.
Every other failure raises ``WaveclsError`` with the status and the detail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.2
# The longest wait between two attempts, whatever Retry-After requests.
MAX_DELAY_S = 10.0


class WaveclsError(Exception):
    """A request failed; ``status`` is None when no response arrived."""

    def __init__(self, message: str, status: int | None, detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Prediction:
    """The classification of one waveform."""

    label: str
    probabilities: dict[str, float]
    ood_score: float
    out_of_distribution: bool
    model_version: str


@dataclass(frozen=True)
class Example:
    """One generated waveform and its class."""

    label: str
    waveform: list[float]


@dataclass(frozen=True)
class Generated:
    """Generated examples and the seed that reproduces them."""

    seed: int
    examples: list[Example]


@dataclass(frozen=True)
class Health:
    """Whether the process is running and whether the model is ready."""

    live: bool
    ready: bool


@dataclass(frozen=True)
class ModelInfo:
    """The loaded artifact as the service describes it."""

    version: str
    sha256: str
    device: str
    class_names: list[str]
    input_length: int
    ood_threshold: float
    metadata: dict[str, Any]


class WaveclsClient:
    """Calls the wavecls HTTP API; use it as a context manager or call ``close``."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        token: str | None = None,
        backoff_s: float = DEFAULT_BACKOFF_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: the service's address, such as ``http://127.0.0.1:8000``.
            timeout: seconds allowed for connecting and for each read or write.
            retries: further attempts after a connection error or a 503; 0
                sends every request once.
            token: the bearer token, when the service sets WAVECLS_API_TOKEN.
            backoff_s: the wait before the first retry; it doubles each time.
            transport: an httpx transport, for tests.
        """
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers=headers, transport=transport
        )

    def __enter__(self) -> WaveclsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def classify(self, waveform: Sequence[float]) -> Prediction:
        """Classify one waveform of the model's input length."""
        body = self._json("POST", "/classify", json={"waveform": list(waveform)})
        return _prediction(body, body["model_version"])

    def classify_batch(self, waveforms: Sequence[Sequence[float]]) -> list[Prediction]:
        """Classify waveforms in one request; predictions keep the input order."""
        rows = [list(waveform) for waveform in waveforms]
        body = self._json("POST", "/classify", json={"waveforms": rows})
        return [
            _prediction(item, body["model_version"]) for item in body["predictions"]
        ]

    def generate(
        self,
        type: str = "random",  # noqa: A002 - the query parameter's name
        count: int = 1,
        seed: int | None = None,
        cycles: int | None = None,
        snr_db: float | None = None,
        amplitude: float = 1.0,
        offset: float = 0.0,
        band_limited: bool = False,
    ) -> Generated:
        """Generate labelled waveforms with the training generator (GET /generate)."""
        params: dict[str, Any] = {
            "type": type,
            "count": count,
            "amplitude": amplitude,
            "offset": offset,
            "band_limited": band_limited,
        }
        optional = {"seed": seed, "cycles": cycles, "snr_db": snr_db}
        params.update(
            {key: value for key, value in optional.items() if value is not None}
        )
        body = self._json("GET", "/generate", params=params)
        examples = [
            Example(item["label"], item["waveform"]) for item in body["examples"]
        ]
        return Generated(body["seed"], examples)

    def health(self) -> Health:
        """Report liveness and readiness; a 503 from /health/ready means not ready."""
        self._json("GET", "/health/live")
        response = self._send("GET", "/health/ready", retry_unavailable=False)
        if response.status_code == 503:
            return Health(live=True, ready=False)
        _raise_for_status(response)
        return Health(live=True, ready=True)

    def model_info(self) -> ModelInfo:
        """Return the loaded artifact's version, hash, device and metadata."""
        body = self._json("GET", "/model")
        return ModelInfo(
            version=body["version"],
            sha256=body["sha256"],
            device=body["device"],
            class_names=list(body["class_names"]),
            input_length=int(body["input_length"]),
            ood_threshold=float(body["ood_threshold"]),
            metadata=body["metadata"],
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        _raise_for_status(response)
        return response.json()

    def _send(
        self, method: str, path: str, retry_unavailable: bool = True, **kwargs: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt >= self.retries:
                    raise WaveclsError(
                        f"{method} {self._http.base_url.join(path)} failed after "
                        f"{attempt + 1} attempts: {exc}; check that the service "
                        "is running and the URL is right",
                        status=None,
                        detail=str(exc),
                    ) from exc
                delay = self._backoff(attempt)
                logger.warning(
                    "retrying method=%s path=%s attempt=%d delay_s=%.2f error=%s",
                    method, path, attempt + 1, delay, exc,
                )  # fmt: skip
            else:
                if not (
                    retry_unavailable
                    and response.status_code == 503
                    and attempt < self.retries
                ):
                    return response
                delay = max(self._backoff(attempt), _retry_after_s(response))
                delay = min(delay, MAX_DELAY_S)
                logger.warning(
                    "retrying method=%s path=%s attempt=%d delay_s=%.2f status=503",
                    method, path, attempt + 1, delay,
                )  # fmt: skip
            time.sleep(delay)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_s * 2**attempt, MAX_DELAY_S))


def _prediction(item: dict[str, Any], model_version: str) -> Prediction:
    return Prediction(
        label=item["label"],
        probabilities=dict(item["probabilities"]),
        ood_score=float(item["ood_score"]),
        out_of_distribution=bool(item["out_of_distribution"]),
        model_version=model_version,
    )


def _retry_after_s(response: httpx.Response) -> float:
    """Return the wait a Retry-After header requests, in seconds; 0 without one."""
    value = response.headers.get("Retry-After")
    if value is None:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, moment.timestamp() - time.time())


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
    elif isinstance(body, dict) and "error" in body:
        detail = body["error"]
    else:
        detail = response.text
    request = response.request
    raise WaveclsError(
        f"{request.method} {request.url} failed with {response.status_code}: "
        f"{_summary(detail)}",
        status=response.status_code,
        detail=detail,
    )


def _summary(detail: Any) -> str:
    # A 422 detail is a list of FastAPI error objects, each with a readable "msg".
    if isinstance(detail, list):
        messages = [
            str(item.get("msg", item)) for item in detail if isinstance(item, dict)
        ]
        return "; ".join(messages) or str(detail)
    return str(detail)
