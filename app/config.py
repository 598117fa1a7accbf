"""Service settings, read from ``WAVECLS_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_PATH = (
    Path(__file__).resolve().parent.parent / "model_artifacts" / "wavecls.pt"
)


class Settings(BaseSettings):
    """Configuration of one service process; every field is ``WAVECLS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="WAVECLS_", frozen=True)

    model_path: Path = Field(
        DEFAULT_MODEL_PATH,
        description="TorchScript artifact; its metadata JSON lies next to it.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="auto picks CUDA when available, else the CPU.",
    )
    host: str = Field("127.0.0.1", description="Address that `python -m app` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of `python -m app`.")
    workers: int = Field(1, ge=1, description="Worker processes of `python -m app`.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = "text"
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry traces, metrics and logs, sent "
        "to the globally configured providers. Off skips their per-request checks.",
    )
    request_log: Literal["all", "errors", "off"] = Field(
        "errors",
        description="Requests that get a log line: all, errors (status 400 and "
        "above) or off. Request counts and latencies are in /metrics either way.",
    )

    max_batch_size: int = Field(
        1024, ge=1, description="Most waveforms accepted in one /classify request."
    )
    max_generate_count: int = Field(
        1000, ge=1, description="Most examples returned by one /generate request."
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body accepted."
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0.0,
        description="Maximum wait for the next part of a request body; a client "
        "that stalls longer gets 408.",
    )

    batch_max_waveforms: int = Field(
        256, ge=1, description="Most waveforms coalesced into one forward pass."
    )
    batch_wait_ms: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="Maximum wait for more requests once others are queued.",
    )
    max_queued_waveforms: int = Field(
        16384, ge=1, description="Queued waveforms beyond which requests get 503."
    )
    inference_timeout_s: float = Field(
        10.0, gt=0.0, description="Time limit of one request's inference."
    )
    inline_max_waveforms: int = Field(
        8,
        ge=0,
        description="A lone request of at most this many waveforms runs on the "
        "event loop instead of a thread, saving a thread hand-off; 0 turns it off.",
    )
    inference_threads: int | None = Field(
        None,
        ge=0,
        description="Threads that run forward passes concurrently, or 0 to run them "
        "on the event loop. Unset: each worker's CPUs less one, from 1 to 2.",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads of each forward pass; unset shares "
        "each worker's CPUs, less one for the event loop, among inference threads.",
    )
    api_token: SecretStr | None = Field(
        None, description="When set, /classify and /generate need this bearer token."
    )


@lru_cache
def get_settings() -> Settings:
    """Return the settings read from the environment once per process."""
    return Settings()
