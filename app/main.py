"""The ASGI application: `uvicorn app.main:app` or `python -m app`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.lifecycle import lifespan
from app.routes import classify, generate, health
from app.schemas import ClassifyBatch, ClassifyOne

DESCRIPTION = """
Classifies 1-D waveforms of 100 samples as sine, square or sawtooth with a
hand-written LSTM, and flags inputs unlike anything it was trained on.
"""


def _add_request_schemas(app: FastAPI, settings: Settings) -> dict[str, Any]:
    # /classify reads its body itself for speed, so FastAPI does not know the
    # request models; they are added to the schema here.
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ClassifyOne, ClassifyBatch):
        model_schema = TypeAdapter(model).json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    components["ClassifyBatch"]["properties"]["waveforms"]["maxItems"] = (
        settings.max_batch_size
    )
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; the model loads when its lifespan starts."""
    settings = settings or get_settings()
    app = FastAPI(
        title="wavecls",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = None
    install_error_handlers(app)
    for module in (classify, generate, health):
        app.include_router(module.router)
    app.openapi = lambda: _add_request_schemas(app, settings)  # type: ignore[method-assign]
    return app


app = create_app()
