"""CPU per localization-only ``POST /score`` inside the ASGI app, without HTTP parsing or sockets.

Four ways to answer the same 16 bodies of ``scorer_load.py``, in one process pinned to one core,
each timed with ``time.process_time`` (all threads, the CPU pool included):

- ``inline``: validate, open, plan, finish, encode on the calling thread (the hand-off's baseline);
- ``handler``: ``ScoreServing.score_body`` + ``model_dump_json``, what the ``/score`` route does;
- ``raw ASGI``: a bare ASGI callable around the same two calls (reads the body, sends the answer):
  what a raw ASGI route for ``/score`` would cost, routing and middleware gone;
- ``FastAPI app``: the service's app (``create_app``: routing, its three middlewares, metrics).

The gaps are the framework's cost per request, measured instead of sampled.

    .venv/bin/python bench/scorer_asgi_cost.py [--seconds 4] [--core 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from scorer_load import make_bodies, write_images
from spr.scorer.app import create_app
from spr.scorer.settings import ScorerSettings

Message = dict[str, Any]


def _receive_for(body: bytes) -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _scope(length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/score",
        "raw_path": b"/score",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def measure(bodies: list[bytes], root: Path, seconds: float) -> dict[str, float]:
    settings = ScorerSettings(data_root=root, scorer_semantic_model="none", scorer_auth="none")
    app = create_app(settings)
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async with app.router.lifespan_context(app):
        serving = app.state.serving

        async def inline(body: bytes) -> None:
            serving._validate_and_plan(body).model_dump_json()  # localization-only: the response

        async def handler(body: bytes) -> None:
            (await serving.score_body(body)).model_dump_json()

        async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body = (await receive())["body"]
            payload = (await serving.score_body(body)).model_dump_json().encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        async def via(asgi: Any, body: bytes) -> None:
            await asgi(_scope(len(body)), _receive_for(body), send)

        ways: dict[str, Callable[[bytes], Awaitable[None]]] = {
            "inline (same work, no CPU-pool hand-off)": inline,
            "handler (score_body + encode)": handler,
            "raw ASGI route": lambda b: via(raw_asgi, b),
            "FastAPI app (routing, middleware, metrics)": lambda b: via(app, b),
        }
        out: dict[str, float] = {}
        for _ in range(2):  # two rounds, the second reported: the first warms every path
            for name, way in ways.items():
                for body in bodies:
                    await way(body)
                done, started = 0, time.process_time()
                wall = time.perf_counter()
                while time.perf_counter() - wall < seconds:
                    for body in bodies:
                        await way(body)
                        done += 1
                out[name] = 1000 * (time.process_time() - started) / done
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per way")
    parser.add_argument("--core", type=int, default=None, help="pin this process to one CPU core")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        bodies = make_bodies(write_images(root, rng), rng, 0.0)
        ms = asyncio.run(measure(bodies, root, args.seconds))
    base = ms["handler (score_body + encode)"]
    print("CPU per localization-only request (process_time, all threads), no HTTP parsing or sockets")
    for name, value in ms.items():
        print(f"  {name:45s} {value:6.3f} ms  ({value - base:+.3f} ms over the handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
