"""CPU per localization-only ``POST /score`` by layer: the handler, the ASGI app, the HTTP protocol.

Seven ways to answer the same 16 bodies of ``scorer_load.py``, in one process pinned to one core,
each timed with ``time.process_time`` (all threads, the CPU pool included):

- ``inline``: validate, open, plan, finish, encode on the calling thread (the hand-off's baseline);
- ``handler``: ``ScoreServing.score_body`` + ``model_dump_json``, what the ``/score`` route does;
- ``raw ASGI``: a bare ASGI callable around the same two calls (reads the body, sends the answer):
  what a raw ASGI route for ``/score`` would cost, routing and middleware gone;
- ``FastAPI app``: the service's app (``create_app``: routing, its three middlewares, metrics);
- ``+ HTTP``: the same app behind uvicorn's HTTP/1.1 protocol, fed the request's bytes through an
  in-memory transport (no sockets, no system calls): uvicorn's pure-Python h11 protocol, its plain
  httptools protocol, and the guarded httptools protocol ``spr scorer serve`` runs
  (:func:`spr.scorer.serve_config.uvicorn_config`: header timeout, header size limit, connection cap).

The gaps are the framework's cost per request, measured instead of sampled.

    .venv/bin/python bench/scorer_asgi_cost.py [--seconds 4] [--rounds 8] [--core 1]
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
import uvicorn
from scorer_load import make_bodies, write_images
from spr.scorer.app import create_app
from spr.scorer.serve_config import uvicorn_config
from spr.scorer.settings import ScorerSettings
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

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


class MemoryTransport(asyncio.Transport):
    """A connection without a socket: keeps what the protocol writes, until the test reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def http_way(
    app: Any, settings: ScorerSettings, protocol: type[asyncio.Protocol]
) -> Callable[[bytes], Awaitable[None]]:
    """Answers a body through ``protocol`` (one kept-alive connection) in front of ``app``."""
    # The rounds are seconds apart: no keep-alive timeout may close the connection in between.
    config = uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning", timeout_keep_alive=3600)
    config.load()

    class Answering(protocol):  # type: ignore[misc, valid-type]
        done: asyncio.Future[None] | None = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.done is not None and not self.done.done():
                self.done.set_result(None)

    transport = MemoryTransport()
    connection: list[Answering] = []  # opened at the first request: an idle one meets the header timeout

    async def answer(body: bytes) -> None:
        if not connection:
            connection.append(Answering(config=config, server_state=ServerState(), app_state={}))  # type: ignore[call-arg]
            connection[0].connection_made(transport)
        conn = connection[0]
        conn.done = asyncio.get_running_loop().create_future()
        head = (
            "POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        conn.data_received(head.encode() + body)
        await conn.done
        answer = b"".join(transport.written)
        transport.written.clear()
        if not answer.startswith(b"HTTP/1.1 200 "):
            raise SystemExit(f"unexpected answer {answer[:200]!r}")

    return answer


async def measure(bodies: list[bytes], root: Path, seconds: float, rounds: int) -> dict[str, float]:
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
            "+ HTTP: uvicorn h11 protocol": http_way(app, settings, H11Protocol),
            "+ HTTP: uvicorn httptools protocol": http_way(app, settings, HttpToolsProtocol),
            "+ HTTP: guarded httptools (spr scorer serve)": http_way(
                app,
                settings,
                uvicorn_config(settings, app).http,  # type: ignore[arg-type]
            ),
        }
        for way in ways.values():  # warm every path
            for body in bodies:
                await way(body)
        # The ways take turns, ``rounds`` times, and each reports its fastest turn (as timeit does: on
        # a shared machine other processes only ever slow a turn down).
        out: dict[str, float] = {}
        for _ in range(rounds):
            for name, way in ways.items():
                done, started = 0, time.process_time()
                wall = time.perf_counter()
                while time.perf_counter() - wall < seconds / rounds:
                    for body in bodies:
                        await way(body)
                        done += 1
                turn = 1000 * (time.process_time() - started) / done
                out[name] = min(turn, out.get(name, turn))
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per way, all rounds")
    parser.add_argument("--rounds", type=int, default=8, help="turns per way; the fastest counts")
    parser.add_argument("--core", type=int, default=None, help="pin this process to one CPU core")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        bodies = make_bodies(write_images(root, rng), rng, 0.0)
        ms = asyncio.run(measure(bodies, root, args.seconds, args.rounds))
    base = ms["handler (score_body + encode)"]
    print("CPU per localization-only request (process_time, all threads), no sockets")
    for name, value in ms.items():
        print(f"  {name:45s} {value:6.3f} ms  ({value - base:+.3f} ms over the handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
