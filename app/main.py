"""The ASGI application: `uvicorn app.main:app` or `python -m app`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings, get_settings
from app.docs import install_docs
from app.errors import install_error_handlers
from app.lifecycle import lifespan
from app.metrics import Metrics
from app.metrics import router as metrics_router
from app.middleware import RequestMiddleware
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


class WaveclsAPI(FastAPI):
    """FastAPI whose POST /classify may skip FastAPI's own request handling.

    When ``shortcut`` is set, it serves POST /classify without FastAPI's
    exception middleware, exit stacks and router. The shortcut is wrapped in
    the same ``RequestMiddleware`` as every other route, so the request id,
    log line, metrics and body size limit stay the same.
    """

    shortcut: ASGIApp | None = None
    # The /classify route, set in the scope as routing would for the metrics.
    classify_route: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, on the shortcut when it applies."""
        if self.shortcut is not None and classify.is_classify_post(scope):
            if self.root_path:
                scope["root_path"] = self.root_path
            scope["app"] = self
            scope["route"] = self.classify_route
            await self.shortcut(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> WaveclsAPI:
    """Build the application; the model loads when its lifespan starts."""
    settings = settings or get_settings()
    app = WaveclsAPI(
        title="wavecls",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
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
    metrics = app.state.metrics
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        request_log=settings.request_log,
        body_timeout_s=settings.body_timeout_s,
    )
    if settings.api_token is None:
        app.shortcut = RequestMiddleware(
            classify.serve_classify,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
            request_log=settings.request_log,
            body_timeout_s=settings.body_timeout_s,
        )
        app.classify_route = next(
            route
            for route in classify.router.routes
            if isinstance(route, APIRoute) and route.path == classify.CLASSIFY_PATH
        )
    install_docs(app)
    app.openapi = lambda: _add_request_schemas(app, settings)  # type: ignore[method-assign]
    return app


app = create_app()
