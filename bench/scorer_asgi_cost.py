"""CPU per localization-only ``POST /score`` by layer: the handler, the ASGI app, the HTTP protocol.

Seven ways to answer the same 16 bodies of ``scorer_load.py``, in one process pinned to one core,
each timed with ``time.process_time`` (all threads, the CPU pool included):

- ``inline``: validate, open, plan, finish, encode on the calling thread (the hand-off's baseline);
- ``handler``: ``ScoreServing.score_body`` (validates, scores, encodes), what the ``/score`` route does;
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
import functools
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from scorer_load import make_bodies, write_images
from spr.scorer.app import create_app
from spr.scorer.heap import prepare_gc_for_serving
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
) -> Callable[[list[bytes]], Awaitable[None]]:
    """Answers bodies through ``protocol`` in front of ``app``, one kept-alive connection per body of a
    call (all sent at once: they are answered concurrently)."""
    # The rounds are seconds apart: no keep-alive timeout may close the connection in between.
    config = uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning", timeout_keep_alive=3600)
    config.load()

    class Answering(protocol):  # type: ignore[misc, valid-type]
        done: asyncio.Future[None] | None = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.done is not None and not self.done.done():
                self.done.set_result(None)

    # Opened at their first request: an idle one would meet the header timeout.
    connections: list[tuple[Answering, MemoryTransport]] = []

    async def answer(bodies: list[bytes]) -> None:
        while len(connections) < len(bodies):
            conn = Answering(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
            transport = MemoryTransport()
            conn.connection_made(transport)
            connections.append((conn, transport))
        loop = asyncio.get_running_loop()
        for (conn, _), body in zip(connections, bodies, strict=False):
            conn.done = loop.create_future()
            head = (
                "POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            conn.data_received(head.encode() + body)
        for conn, transport in connections[: len(bodies)]:
            await conn.done
            answer = b"".join(transport.written)
            transport.written.clear()
            if not answer.startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"unexpected answer {answer[:200]!r}")

    return answer


def per_request_handoffs(
    batched: Any, way: Callable[[list[bytes]], Awaitable[None]]
) -> Callable[[list[bytes]], Awaitable[None]]:
    """``way`` with one CPU-pool hand-off per job (``run_in_executor``), the baseline of the pool's
    one hand-off per loop turn (:class:`spr.scorer.cpu_pool.CpuPool`)."""
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="per-request")

    async def run_cpu(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(fn, *args, **kwargs)
        )

    async def answer(bodies: list[bytes]) -> None:
        batched.run_cpu = run_cpu
        try:
            await way(bodies)
        finally:
            del batched.run_cpu  # the class's own again

    return answer


async def measure(
    bodies: list[bytes], root: Path, seconds: float, rounds: int, concurrency: int
) -> dict[str, float]:
    settings = ScorerSettings(data_root=root, scorer_semantic_model="none", scorer_auth="none")
    app = create_app(settings)
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async with app.router.lifespan_context(app):
        serving = app.state.serving
        prepare_gc_for_serving()  # as `spr scorer serve` does once the models loaded

        async def inline(bodies: list[bytes]) -> None:
            for body in bodies:
                serving._validate_and_plan(body)  # localization-only: validates, scores, encodes

        async def handler(bodies: list[bytes]) -> None:
            for body in bodies:
                await serving.score_body(body)

        async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            body = (await receive())["body"]
            payload = await serving.score_body(body)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        def via(asgi: Any) -> Callable[[list[bytes]], Awaitable[None]]:
            async def answer(bodies: list[bytes]) -> None:
                for body in bodies:
                    await asgi(_scope(len(body)), _receive_for(body), send)

            return answer

        served = uvicorn_config(settings, app).http  # the guarded protocol class `spr scorer serve` runs
        guarded = http_way(app, settings, served)  # type: ignore[arg-type]
        guarded_concurrent = http_way(app, settings, served)  # type: ignore[arg-type]
        one_at_a_time: dict[str, Callable[[list[bytes]], Awaitable[None]]] = {
            "inline (same work, no CPU-pool hand-off)": inline,
            "handler (score_body + encode)": handler,
            "raw ASGI route": via(raw_asgi),
            "FastAPI app (routing, middleware, metrics)": via(app),
            "+ HTTP: uvicorn h11 protocol": http_way(app, settings, H11Protocol),
            "+ HTTP: uvicorn httptools protocol": http_way(app, settings, HttpToolsProtocol),
            "+ HTTP: guarded httptools (spr scorer serve)": guarded,
            "  same, one hand-off per job (before the pool)": per_request_handoffs(serving.batched, guarded),
        }
        concurrent = {
            f"{concurrency} at once, guarded httptools": guarded_concurrent,
            f"{concurrency} at once, one hand-off per job": per_request_handoffs(
                serving.batched, guarded_concurrent
            ),
        }
        batches = [[body] for body in bodies]
        together = [(bodies * (1 + concurrency // len(bodies)))[:concurrency]]
        ways = [(name, way, batches) for name, way in one_at_a_time.items()]
        ways += [(name, way, together) for name, way in concurrent.items()]
        for _, way, work in ways:  # warm every path
            for batch in work:
                await way(batch)
        # The ways take turns, ``rounds`` times, and each reports its fastest turn (as timeit does: on
        # a shared machine other processes only ever slow a turn down).
        out: dict[str, float] = {}
        for _ in range(rounds):
            for name, way, work in ways:
                done, started = 0, time.process_time()
                wall = time.perf_counter()
                while time.perf_counter() - wall < seconds / rounds:
                    for batch in work:
                        await way(batch)
                        done += len(batch)
                turn = 1000 * (time.process_time() - started) / done
                out[name] = min(turn, out.get(name, turn))
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per way, all rounds")
    parser.add_argument("--rounds", type=int, default=8, help="turns per way; the fastest counts")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="connections sending at once in the last two ways"
    )
    parser.add_argument("--core", type=int, default=None, help="pin this process to one CPU core")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        bodies = make_bodies(write_images(root, rng), rng, 0.0)
        ms = asyncio.run(measure(bodies, root, args.seconds, args.rounds, args.concurrency))
    base = ms["handler (score_body + encode)"]
    print("CPU per localization-only request (process_time, all threads), no sockets")
    for name, value in ms.items():
        print(f"  {name:45s} {value:6.3f} ms  ({value - base:+.3f} ms over the handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
