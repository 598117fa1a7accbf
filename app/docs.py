"""Swagger UI at /docs and ReDoc at /redoc, with every asset served by the service."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parent / "static" / "docs"
ASSETS_PATH = "/static/docs"
# Versions and licences of these files: app/static/docs/README.md.
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
FAVICON = "favicon-32x32.png"
REDOC_JS = "redoc.standalone.js"
# Keeps the pages from loading anything off this host. redoc 2.5.4 hard-codes its
# attribution logo at cdn.redoc.ly, so the policy blocks it and ReDoc hides the image.
# FastAPI's page templates configure both UIs with an inline script, and ReDoc
# styles itself inline and runs its search index in a blob: worker.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "worker-src 'self' blob:; "
    "connect-src 'self'"
)

router = APIRouter(include_in_schema=False)


def _asset_url(request: Request, asset: str) -> str:
    # root_path keeps the URLs right behind a proxy that serves the app under a prefix.
    return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{asset}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Serve Swagger UI, where each operation can be tried against this service."""
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, SWAGGER_JS),
        swagger_css_url=_asset_url(request, SWAGGER_CSS),
        swagger_favicon_url=_asset_url(request, FAVICON),
        # The API has no OAuth2 flow, so the redirect page is not needed.
        oauth2_redirect_url=None,
    )
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """Serve the ReDoc reference page."""
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset_url(request, REDOC_JS),
        redoc_favicon_url=_asset_url(request, FAVICON),
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI) -> None:
    """Add the /docs and /redoc pages and mount the static files they load."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
