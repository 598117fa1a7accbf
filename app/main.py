"""The ASGI application: `uvicorn app.main:app` or `python -m app`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from app.config import Settings, get_settings
from app.docs import install_docs
from app.errors import install_error_handlers
from app.lifecycle import lifespan
from app.metrics import Metrics, MetricsMiddleware
from app.metrics import router as metrics_router
from app.middleware import BodySizeLimitMiddleware, RequestLogMiddleware
from app.routes import classify, generate, health, page, v2
from app.schemas import ClassifyBatch, ClassifyOne
from app.security import api_token_dependencies

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
    for parameter in schema["paths"]["/generate"]["get"]["parameters"]:
        if parameter["name"] == "count":
            parameter["schema"]["maximum"] = settings.max_generate_count
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
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = None
    install_error_handlers(app)
    token_required = api_token_dependencies(settings)
    for module in (classify, generate):
        app.include_router(module.router, dependencies=token_required)
    app.include_router(health.router)
    app.include_router(v2.router)
    app.include_router(v2.infer_router, dependencies=token_required)
    app.include_router(page.router)
    app.state.metrics = Metrics()
    app.include_router(metrics_router)
    # The last middleware added runs first: request ids cover 413s and 500s.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestLogMiddleware)
    install_docs(app)
    app.openapi = lambda: _add_request_schemas(app, settings)  # type: ignore[method-assign]
    return app


app = create_app()
