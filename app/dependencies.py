"""Request dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from app.config import Settings
from app.errors import ModelNotReadyError
from app.inference import InferenceEngine


def get_settings_from_app(request: Request) -> Settings:
    """Return the settings the application was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> InferenceEngine:
    """Return the inference engine, or raise while the model is still loading."""
    engine: InferenceEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ModelNotReadyError("the artifact is still loading")
    return engine
