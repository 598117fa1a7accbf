"""Event loop CPU per request of an app, driven in process without HTTP.

    python -m bench.inprocess                      # wavecls, 32 concurrent requests
    python -m bench.inprocess --app trivial
    python -m bench.inprocess --concurrency 1      # the latency path of one client

Calls the ASGI app directly on uvloop with ready-made request messages, so the
figures leave out uvicorn's HTTP parsing and the sockets. CPU time is less
disturbed by other load on the machine than throughput, which makes this the
tool for comparing code changes on a shared machine. Run it under
``py-spy record -- python -m bench.inprocess`` to see where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import uvloop
from starlette.types import ASGIApp, Message

from bench.__main__ import request_body

WARMUP_REQUESTS = 50


def build_app(name: str) -> ASGIApp:
    """Return the trivial app or wavecls."""
    if name == "trivial":
        from bench.trivial_app import app as trivial

        return trivial

    from app.main import create_app

    return create_app()


def http_scope(body: bytes) -> dict[str, Any]:
    """Return the ASGI scope of ``POST /classify`` with ``body``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/classify",
        "raw_path": b"/classify",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def send_request(app: ASGIApp, body: bytes) -> None:
    """Send one request to ``app`` and check that its status is 200."""
    sent: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http_scope(body), receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"the app returned {sent[0]['status']}: {sent[1:]}")


async def run_lifespan(
    app: ASGIApp, inbox: asyncio.Queue[Message], ready: asyncio.Event
) -> None:
    """Run the app's lifespan; set ``ready`` after startup, stop on shutdown."""
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def send(message: Message) -> None:
        await outbox.put(message)

    task: asyncio.Future[None] = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"startup failed: {started}")
    ready.set()
    await outbox.get()  # shutdown.complete, after measure() sends the shutdown
    await task


async def measure(app: ASGIApp, body: bytes, concurrency: int, requests: int) -> None:
    """Print event loop and process CPU per request over ``requests`` requests."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    ready = asyncio.Event()
    lifespan = asyncio.create_task(run_lifespan(app, inbox, ready))
    await ready.wait()

    async def client(count: int) -> None:
        for _ in range(count):
            await send_request(app, body)

    await asyncio.gather(*(client(WARMUP_REQUESTS) for _ in range(concurrency)))
    per_client = max(1, requests // concurrency)
    loop_cpu, process_cpu = time.thread_time(), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(client(per_client) for _ in range(concurrency)))
    total = per_client * concurrency
    print(
        f"requests={total} concurrency={concurrency} "
        f"loop_cpu_us={(time.thread_time() - loop_cpu) / total * 1e6:.1f} "
        f"process_cpu_us={(time.process_time() - process_cpu) / total * 1e6:.1f} "
        f"wall_us={(time.perf_counter() - started) / total * 1e6:.1f}"
    )
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and measure."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.inprocess",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--app", choices=("wavecls", "trivial"), default="wavecls")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--waveforms", type=int, default=1, help="per request")
    args = parser.parse_args(argv)
    os.environ.setdefault("WAVECLS_DEVICE", "cpu")

    app = build_app(args.app)
    body = request_body(args.waveforms)
    uvloop.run(measure(app, body, args.concurrency, args.requests))


if __name__ == "__main__":
    main()
