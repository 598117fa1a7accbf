"""GET /: a page to generate, draw or paste a waveform and classify it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

router = APIRouter(include_in_schema=False)

PAGE_DIR = Path(__file__).resolve().parent.parent / "static" / "page"
ASSET_TYPES = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}
# The page loads nothing but its own files and calls nothing but this service.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


@router.get("/")
async def page() -> FileResponse:
    """Serve the page."""
    return FileResponse(
        PAGE_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


@router.get("/page/{asset}")
async def page_asset(asset: str) -> Response:
    """Serve the page's script or style sheet."""
    media_type = ASSET_TYPES.get(asset)
    if media_type is None:
        message = f"page asset {asset!r} not found; the page has {sorted(ASSET_TYPES)}"
        return JSONResponse({"detail": message}, status_code=404)
    return FileResponse(PAGE_DIR / asset, media_type=media_type, headers=HEADERS)
