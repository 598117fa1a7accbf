"""A FastAPI app with a constant POST /classify: the framework's ceiling.

The benchmark runs it as ``uvicorn bench.trivial_app:app`` with the service's
server settings. It loads no model and neither reads nor validates the body, so
its throughput is what uvicorn and FastAPI allow on the machine.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

CONSTANT_BODY = b'{"label":"sine"}'

app = FastAPI(title="trivial")


@app.post("/classify")
async def classify() -> Response:
    """Return a constant JSON body without reading the request."""
    return Response(CONSTANT_BODY, media_type="application/json")


@app.get("/health/ready")
async def ready() -> Response:
    """Return 200 at once: there is nothing to load."""
    return Response(b'{"status":"ready"}', media_type="application/json")


@app.get("/health/live")
async def live() -> Response:
    """Return 200 while the process is running."""
    return Response(b'{"status":"alive"}', media_type="application/json")
